"""Retention in the embedded default: ``lookalike serve`` of its own with a retention of a few
seconds; its scheduler deletes the finished job's row, photo, crops and embedding.
(The distributed periodic task is covered in test_resilience.py.)"""

from __future__ import annotations

import shutil

from service_procs import LOOKALIKE, Proc, free_port, wait_until
from service_stacks import Stack, wait_ready


def test_old_jobs_are_deleted_with_objects_and_embedding(embedded_stack, small_gallery, service_tmp,
                                                         portrait):
    data_dir = service_tmp / "retention-embedded"
    shutil.copytree(small_gallery, data_dir / "gallery")
    port = free_port()
    env = dict(embedded_stack.env, LOOKALIKE_DATA_DIR=str(data_dir), LOOKALIKE_API_PORT=str(port),
               # 0.004 h = 14.4 s: long enough to finish a job on a busy machine, short to wait
               LOOKALIKE_RETENTION_HOURS="0.004", LOOKALIKE_RETENTION_EVERY_S="0.5")
    stack = Stack("embedded", f"http://127.0.0.1:{port}", env, data_dir)
    stack.procs["serve"] = Proc("serve", [LOOKALIKE, "serve"], env, data_dir / "serve.log").start()
    try:
        wait_ready(stack)
        stack.create_key("client", ["client"])
        stack.secret = env["LOOKALIKE_SECRET_KEY"].encode()
        r = stack.submit(portrait, clips="none")
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert stack.wait(job_id)["state"] == "succeeded"
        names = {k.rsplit("/", 1)[-1] for k in stack.objects(f"jobs/{job_id}/")}
        assert {"original", "aligned.jpg", "face.npz"} <= names, names

        wait_until(lambda: stack.job_row(job_id) is None, 60, interval=0.2, what="job purged")
        assert stack.objects(f"jobs/{job_id}/") == []
        with stack.client() as c:
            assert c.get(f"/v1/jobs/{job_id}").status_code == 404
        assert stack.procs["serve"].alive()
    except BaseException:
        print(stack.log_tail(80))
        raise
    finally:
        stack.stop()
