"""A private distributed stack for the service benchmarks, on loopback, torn down afterwards.

Its own redis-server (free port), its own PostgreSQL database (created and dropped; the server
at 127.0.0.1:5432 must run, LOOKALIKE_TEST_PG overrides), its own ``weed mini`` S3 server on
ports of its own (so a test session's S3 on 8333 is not disturbed), a small gallery imported
from the fixture faces, ``lookalike api`` and the ``lookalike worker`` processes asked for.
The process helpers are the service tests' own (tests/service/service_procs.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))

from service_procs import (LOOKALIKE, VENV_BIN, Proc, Redis, create_database,  # noqa: E402
                           drop_database, free_port, port_open, wait_until)

GALLERY_PEOPLE = [("Tom_Hanks", "good"), ("Halle_Berry", "good"), ("Tony_Blair", "good"),
                  ("Colin_Powell", "good"), ("Donald_Rumsfeld", "bad")]
S3_ACCESS, S3_SECRET = "bench", "bench-secret"
#: weed mini's own ports, away from its defaults (8333, 9333, 8888, …) a test session uses
WEED_PORTS = {"master.port": 29333, "filer.port": 28888, "volume.port": 28080, "s3.port": 28333,
              "admin.port": 23647, "webdav.port": 27333}


def threads_env() -> dict:
    """One compute thread per process: a worker process is the unit being scaled."""
    return {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                             "OPENCV_FOR_THREADS_NUM")}


class BenchStack:
    def __init__(self, fixtures: Path, *, api_workers: int = 1, extra_env: dict | None = None,
                 keep: bool = False) -> None:
        self.fixtures = Path(fixtures).resolve()  # the gallery links to the photos
        self.api_workers = api_workers
        self.tmp = Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
        self.keep = keep
        self.procs: dict[str, Proc] = {}
        self.redis: Redis | None = None
        self.db_name = f"lookalike_bench_{os.getpid()}"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.env: dict = {}
        self.keys: dict[str, str] = {}

    # --- parts ------------------------------------------------------------------------------
    def _weed(self) -> str:
        s3_port = WEED_PORTS["s3.port"]
        if port_open(s3_port):
            raise RuntimeError(f"port {s3_port} is taken: is another benchmark running?")
        binary = shutil.which("weed") or str(VENV_BIN / "weed")
        cfg = self.tmp / "s3.json"
        cfg.write_text(json.dumps({"identities": [{
            "name": "bench", "credentials": [{"accessKey": S3_ACCESS, "secretKey": S3_SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        args = [binary, "mini", f"-dir={self.tmp / 's3'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.config={cfg}", "-admin.ui=false"]
        args += [f"-{k}={v}" for k, v in WEED_PORTS.items()]
        (self.tmp / "s3").mkdir()
        self.procs["weed"] = Proc("weed", args, dict(os.environ), self.tmp / "logs" / "weed.log").start()
        endpoint = f"http://127.0.0.1:{s3_port}"
        wait_until(lambda: httpx.get(endpoint, timeout=2).status_code in (200, 403), 90,
                   interval=0.3, what="weed mini S3 API")
        return endpoint

    def _gallery(self) -> Path:
        from lookalike.gallery.importer import import_folder

        source = self.tmp / "gallery-src"
        for person, _ in GALLERY_PEOPLE:
            (source / person).mkdir(parents=True)
            for photo in sorted((self.fixtures / "faces" / person).iterdir())[:2]:
                (source / person / photo.name).symlink_to(photo)
        meta = self.tmp / "people.csv"
        meta.write_text("id,name,category\n" + "".join(
            f"{p},{p.replace('_', ' ')},{c}\n" for p, c in GALLERY_PEOPLE))
        gallery = self.tmp / "gallery"
        import_folder(source, gallery, metadata=meta, workers=1)
        return gallery

    def start(self) -> "BenchStack":
        try:
            self.redis = Redis(self.tmp / "redis").start()
            pg_url = create_database(self.db_name)
            endpoint = self._weed()
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
            env.update({
                "LOOKALIKE_DATA_DIR": str(self.tmp / "data"),
                "LOOKALIKE_API_HOST": "127.0.0.1", "LOOKALIKE_API_PORT": str(self.port),
                "LOOKALIKE_SECRET_KEY": "bench-secret-key-0123456789abcdef",
                "LOOKALIKE_AUTH": "keys",
                "LOOKALIKE_DATABASE_URL": pg_url, "LOOKALIKE_REDIS_URL": self.redis.url,
                "LOOKALIKE_STORAGE": "s3", "LOOKALIKE_S3_ENDPOINT_URL": endpoint,
                "LOOKALIKE_S3_BUCKET": "lookalike-bench",
                "LOOKALIKE_S3_ACCESS_KEY": S3_ACCESS, "LOOKALIKE_S3_SECRET_KEY": S3_SECRET,
                "LOOKALIKE_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
            })
            env.update(self.extra_env)
            self.env = env
            published = self.cli("gallery", "publish", "--gallery", str(self._gallery()))
            if published.returncode != 0:
                raise RuntimeError(published.stderr)
            self.procs["api"] = Proc("api", [LOOKALIKE, "api", "--workers", str(self.api_workers)],
                                     env, self.tmp / "logs" / "api.log").start()
            wait_until(self._ready, 120, interval=0.2, what="API ready")
            self.keys["client"] = self.create_key("client")
            self.keys["admin"] = self.create_key("admin", "admin", "client")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if not self.procs["api"].alive():
            raise RuntimeError("api exited:\n" + self.procs["api"].output()[-3000:])
        return httpx.get(self.base_url + "/readyz", timeout=2, trust_env=False).status_code == 200

    def cli(self, *args: str):
        import subprocess

        return subprocess.run([LOOKALIKE, *args], env=self.env, capture_output=True, text=True,
                              timeout=120)

    def create_key(self, name: str, *scopes: str) -> str:
        args = ["keys", "create", "--name", f"bench-{name}", "--json", "--rate-limit", "100000000"]
        for s in scopes or ("client",):
            args += ["--scope", s]
        done = self.cli(*args)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
        return json.loads(done.stdout)["key"]

    def start_worker(self, name: str, queues: str = "all", concurrency: int = 1) -> Proc:
        env = {**self.env, **threads_env()}
        proc = Proc(name, [LOOKALIKE, "worker", "--queue", queues, "--concurrency", str(concurrency),
                           "--loglevel", "INFO"], env, self.tmp / "logs" / f"{name}.log").start()
        self.procs[name] = proc

        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(f"{name} exited:\n{proc.output()[-3000:]}")
            return " ready." in proc.output()

        wait_until(ready, 120, interval=0.2, what=f"worker {name}")
        return proc

    def stop_worker(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc:
            proc.stop(timeout=20)

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.procs[name].stop(timeout=20)
        self.procs.clear()
        if self.redis:
            self.redis.stop()
        try:
            drop_database(self.db_name)
        except Exception:  # noqa: BLE001 - best effort
            pass
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "BenchStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def photo_near(fixtures: Path, size: int) -> Path:
    """The fixture face photo whose file size is closest to ``size`` bytes."""
    photos = [p for p in (fixtures / "faces").glob("*/*.jpg")]
    return min(photos, key=lambda p: abs(p.stat().st_size - size))
