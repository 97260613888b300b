"""A running Lookalike stack as the tests see it: a base URL, keys, and ways to look inside
(the job store and the object store) to check that refused uploads and DELETE leave nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service_procs import LOOKALIKE, Proc, wait_until

FINAL = ("succeeded", "failed")
SECRET_KEY = "test-secret-key-0123456789abcdef"


@dataclass
class Stack:
    kind: str  # "distributed" | "embedded"
    base_url: str
    env: dict
    data_dir: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # role -> full key
    key_ids: dict[str, str] = field(default_factory=dict)
    secret: bytes = b""
    _db = None
    _store = None

    # --- HTTP ---------------------------------------------------------------------------
    def headers(self, role: str = "client") -> dict:
        return {"Authorization": f"Bearer {self.keys[role]}"} if role else {}

    def client(self, role: str = "client", timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers(role), timeout=timeout,
                            trust_env=False)

    def submit(self, photo: Path | bytes, role: str = "client", name: str = "photo.jpg", **fields) -> httpx.Response:
        data = photo if isinstance(photo, bytes) else Path(photo).read_bytes()
        with self.client(role) as c:
            return c.post("/v1/jobs", files={"photo": (name, data, "application/octet-stream")},
                          data={k: str(v) for k, v in fields.items()})

    def job(self, job_id: str, role: str = "client") -> dict:
        with self.client(role) as c:
            r = c.get(f"/v1/jobs/{job_id}")
            r.raise_for_status()
            return r.json()

    def wait(self, job_id: str, timeout: float = 90, role: str = "client") -> dict:
        return wait_until(lambda: (lambda j: j if j["state"] in FINAL else None)(self.job(job_id, role)),
                          timeout, interval=0.1, what=f"job {job_id} to finish")

    # --- inside views ---------------------------------------------------------------------
    @property
    def db(self):
        if self._db is None:
            from lookalike.jobstore import Database

            self._db = Database(self.env["LOOKALIKE_DATABASE_URL"] if "LOOKALIKE_DATABASE_URL" in self.env
                                else f"sqlite:///{self.data_dir / 'jobs.db'}")
        return self._db

    @property
    def store(self):
        if self._store is None:
            from lookalike.storage import LocalStore, S3Store

            if self.env.get("LOOKALIKE_STORAGE") == "s3":
                self._store = S3Store(self.env["LOOKALIKE_S3_BUCKET"],
                                      endpoint_url=self.env["LOOKALIKE_S3_ENDPOINT_URL"],
                                      access_key=self.env["LOOKALIKE_S3_ACCESS_KEY"],
                                      secret_key=self.env["LOOKALIKE_S3_SECRET_KEY"])
            else:
                self._store = LocalStore(self.data_dir / "objects", self.secret)
        return self._store

    def job_count(self) -> int:
        from sqlalchemy import func, select

        from lookalike.jobstore.models import Job

        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(Job))

    def job_row(self, job_id: str):
        from lookalike.jobstore.models import Job

        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is not None:
                s.expunge(job)
            return job

    def deliveries(self, job_id: str):
        from lookalike.jobstore import repo

        with self.db.session() as s:
            rows = repo.deliveries_of(s, job_id)
            for r in rows:
                s.expunge(r)
            return rows

    def objects(self, prefix: str = "jobs/") -> list[str]:
        return self.store.list(prefix)

    # --- commands -------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([LOOKALIKE, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def create_key(self, role: str, scopes: list[str], rate_limit: int | None = None) -> str:
        args = ["keys", "create", "--name", f"test-{role}", "--json"]
        for s in scopes:
            args += ["--scope", s]
        if rate_limit:
            args += ["--rate-limit", str(rate_limit)]
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        info = json.loads(done.stdout)
        self.keys[role] = info["key"]
        self.key_ids[role] = info["id"]
        return info["key"]

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        if self._db is not None:
            self._db.dispose()

    def log_tail(self, n: int = 60) -> str:
        out = []
        for name, proc in self.procs.items():
            lines = proc.output().splitlines()[-n:]
            out.append(f"----- {name} -----\n" + "\n".join(lines))
        return "\n".join(out)


def wait_ready(stack: Stack, timeout: float = 90) -> None:
    def ready() -> bool:
        for name, proc in stack.procs.items():
            if not proc.alive():
                raise RuntimeError(f"{name} exited:\n{proc.output()[-3000:]}")
        r = httpx.get(stack.base_url + "/readyz", timeout=2, trust_env=False)
        return r.status_code == 200

    try:
        wait_until(ready, timeout, interval=0.2, what=f"{stack.kind} API ready")
    except (TimeoutError, RuntimeError):
        raise AssertionError(f"{stack.kind} stack did not start:\n{stack.log_tail()}") from None


def wait_worker_ready(proc: Proc, timeout: float = 90) -> None:
    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
        return " ready." in proc.output()

    wait_until(ready, timeout, interval=0.2, what=f"{proc.name} ready")


def decode_video(data: bytes) -> tuple[int, int, int]:
    """(frames, width, height) of an MP4 (or animated WebP) decoded with PyAV."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = 0
        width = height = 0
        for frame in container.decode(stream):
            frames += 1
            width, height = frame.width, frame.height
    return frames, width, height


def sse_events(stack: Stack, job_id: str, role: str = "client", timeout: float = 90) -> list[dict]:
    """Read the job's event stream to its end; returns the JSON of each ``job`` event."""
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    with stack.client(role, timeout=timeout) as c:
        with c.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            assert r.status_code == 200, r.read()
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                if time.monotonic() > deadline:
                    break
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind == "job":
                    events.append(json.loads(line.split(":", 1)[1]))
    return events


# --- dedicated stacks (tests that kill or restart parts) ------------------------------------------

QUEUE_NAMES = ("encoder", "matcher", "renderer", "notify")


def start_worker(stack: Stack, queue: str, logs: Path, env: dict | None = None,
                 name: str | None = None) -> Proc:
    """One ``lookalike worker --queue X`` (the notify one with ``--beat``), ready to take tasks."""
    args = [LOOKALIKE, "worker", "--queue", queue, "--concurrency", "1", "--loglevel", "INFO"]
    if queue == "notify":
        args.append("--beat")
    name = name or queue
    proc = Proc(name, args, env or stack.env, logs / f"{name}.log").start()
    stack.procs[name] = proc
    wait_worker_ready(proc)
    return proc


def start_serve_stack(kind: str, env: dict, data_dir: Path, log_dir: Path) -> Stack:
    """``lookalike serve`` (the embedded default) with ``env``, waited for until ready."""
    stack = Stack(kind, f"http://127.0.0.1:{env['LOOKALIKE_API_PORT']}", env, data_dir)
    stack.procs["serve"] = Proc("serve", [LOOKALIKE, "serve"], env, log_dir / "serve.log").start()
    try:
        wait_ready(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def start_distributed_stack(kind: str, env: dict, data_dir: Path, gallery: Path) -> Stack:
    """A whole distributed stack of its own (API + one worker per queue) over ``env``, which
    names its own Redis, database and bucket; keys ``admin`` and ``client`` are created."""
    stack = Stack(kind, f"http://127.0.0.1:{env['LOOKALIKE_API_PORT']}", env, data_dir)
    logs = data_dir / "logs"
    try:
        published = stack.cli("gallery", "publish", "--gallery", str(gallery))
        assert published.returncode == 0, published.stderr
        for queue in QUEUE_NAMES:
            args = [LOOKALIKE, "worker", "--queue", queue, "--concurrency", "1", "--loglevel", "INFO"]
            if queue == "notify":
                args.append("--beat")
            stack.procs[queue] = Proc(queue, args, env, logs / f"{queue}.log").start()
        stack.procs["api"] = Proc("api", [LOOKALIKE, "api"], env, logs / "api.log").start()
        wait_ready(stack)
        for queue in QUEUE_NAMES:
            wait_worker_ready(stack.procs[queue])
        stack.create_key("admin", ["admin", "client"])
        stack.create_key("client", ["client"])
    except BaseException:
        print(stack.log_tail(200))
        stack.stop()
        raise
    return stack


def metric_samples(stack: Stack) -> dict[str, list]:
    """``/metrics`` parsed: sample name -> [(labels, value), …]."""
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(stack.base_url + "/metrics", timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def sample(samples: dict[str, list], name: str, **labels) -> float | None:
    """The value of the one sample ``name`` whose labels include ``labels`` (None if absent)."""
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def common_env(data_dir: Path, port: int, mailbox) -> dict:
    """The settings both stacks (and the fuzz stack) run with; ``mailbox`` is the SMTP receiver."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update({
        "LOOKALIKE_DATA_DIR": str(data_dir),
        "LOOKALIKE_API_HOST": "127.0.0.1",
        "LOOKALIKE_API_PORT": str(port),
        "LOOKALIKE_SECRET_KEY": SECRET_KEY,
        "LOOKALIKE_AUTH": "keys",
        "LOOKALIKE_WEBHOOK_ALLOW": "127.0.0.1",
        "LOOKALIKE_WEBHOOK_RETRY_FIRST_S": "0.5",
        "LOOKALIKE_WEBHOOK_RETRY_MAX_S": "2",
        "LOOKALIKE_SMTP_HOST": "127.0.0.1",
        "LOOKALIKE_SMTP_PORT": str(mailbox.port),
        "LOOKALIKE_RECONCILE_EVERY_S": "1",
        "LOOKALIKE_STALL_GRACE_S": "1",
        "LOOKALIKE_ENCODER_TIME_LIMIT_S": "15",
        "LOOKALIKE_MATCHER_TIME_LIMIT_S": "10",
        "LOOKALIKE_RENDERER_TIME_LIMIT_S": "60",
        "LOOKALIKE_NOTIFY_TIME_LIMIT_S": "10",
        # small, short clips: the tests check that videos decode, not how they look
        "LOOKALIKE_VIDEO_SIZE": "256",
        "LOOKALIKE_MORPH_SECONDS": "1.0",
        "LOOKALIKE_HOLD_SECONDS": "0.2",
        "LOOKALIKE_WEBP_SIZE": "128",
        "LOOKALIKE_MAX_UPLOAD_BYTES": str(5 * 1024 * 1024),
        "PYTHONUNBUFFERED": "1",
    })
    return env
