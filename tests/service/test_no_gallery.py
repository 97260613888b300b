"""A server with no gallery yet: it says so at start and in /readyz, and refuses uploads with
503 ``gallery_missing`` (storing and queueing nothing) instead of accepting jobs that can only
fail; once a gallery is there, the same server takes photos."""

from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest

from service_procs import LOOKALIKE, free_port, wait_until
from service_stacks import common_env, start_serve_stack


@pytest.fixture(scope="module")
def bare_stack(service_tmp, mailbox):
    data_dir = service_tmp / "no-gallery"
    port = free_port()
    env = common_env(data_dir, port, mailbox)
    env["LOOKALIKE_AUTH"] = "off"  # loopback, no keys: the plain `lookalike serve` of the README
    stack = start_serve_stack("embedded", env, data_dir, service_tmp / "logs-no-gallery")
    yield stack
    stack.stop()


def test_no_gallery_refuses_uploads_until_there_is_one(bare_stack, portrait, small_gallery):
    assert "No gallery: there is no gallery at" in bare_stack.procs["serve"].output()
    with httpx.Client(base_url=bare_stack.base_url, timeout=30, trust_env=False) as c:
        ready = c.get("/readyz").json()
        assert ready["status"] == "ok" and ready["checks"]["gallery"] == "missing", ready

        r = c.post("/v1/jobs", files={"photo": ("me.jpg", portrait.read_bytes(), "image/jpeg")})
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "gallery_missing"
        assert "no celebrity gallery" in error["message"] and "/" not in error["message"]  # no path
        assert bare_stack.job_count() == 0 and bare_stack.objects("jobs/") == []
        # bad input is still named as such, not hidden behind the missing gallery
        r = c.post("/v1/jobs", files={"photo": ("x.jpg", b"", "image/jpeg")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "empty_file", r.text

        shutil.copytree(small_gallery, bare_stack.data_dir / "gallery")
        time.sleep(5.5)  # the answer of the gallery check is reused for 5 s
        assert c.get("/readyz").json()["checks"]["gallery"] == "ok"
        r = c.post("/v1/jobs", files={"photo": ("me.jpg", portrait.read_bytes(), "image/jpeg")},
                   data={"clips": "none"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        done = wait_until(lambda: (lambda v: v if v["state"] in ("succeeded", "failed") else None)(
            c.get(f"/v1/jobs/{job_id}").json()), 90, what="job done")
    assert done["state"] == "succeeded", done
    assert done["result"]["matches"], done


def test_a_taken_port_stops_serve_before_anything_starts(tmp_path):
    import socket
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
        env["LOOKALIKE_DATA_DIR"] = str(tmp_path)
        done = subprocess.run([LOOKALIKE, "serve", "--port", str(port)], env=env, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 4, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert not (tmp_path / "jobs.db").exists()  # no job store opened, no stage started
