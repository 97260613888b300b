"""Process fixtures of the service tests: everything is started here, as real processes.

Session-wide: a private redis-server on a free port (so restarting it disturbs nobody), a
fresh PostgreSQL database ``lookalike_test_<pid>`` (dropped at the end), an S3 server
(``weed mini`` unless one answers on 127.0.0.1:8333 already), a webhook receiver and an SMTP
server (aiosmtpd) in this process, a small gallery imported from the fixture faces, and two
stacks:

* ``distributed``: ``lookalike api`` + ``lookalike worker --queue X`` for each queue
  (the notify one with ``--beat``), on PostgreSQL, S3 and Celery over Redis;
* ``embedded``: ``lookalike serve`` (SQLite, local folder, in-process stages).

Tests that take ``stack`` run against both. Only PostgreSQL at 127.0.0.1:5432 (trust auth,
user postgres; LOOKALIKE_TEST_PG overrides) must already run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from service_procs import (LOOKALIKE, S3_ACCESS, S3_SECRET, Proc, Redis, S3Server,  # noqa: E402
                           create_database, drop_database, free_port)
from service_stacks import (SECRET_KEY, Stack, common_env, start_serve_stack,  # noqa: E402
                            wait_ready, wait_worker_ready)

#: the small gallery: (person, photos, category)
GALLERY_PEOPLE = [("Tom_Hanks", 2, "good"), ("Halle_Berry", 2, "good"),
                  ("Tony_Blair", 2, "good"), ("Donald_Rumsfeld", 2, "bad")]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/service/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def service_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="session")
def redis_server(service_tmp):
    server = Redis(service_tmp / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_url():
    name = f"lookalike_test_{os.getpid()}"
    try:
        url = create_database(name)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is needed at 127.0.0.1:5432 (LOOKALIKE_TEST_PG): {exc}")
    yield url
    drop_database(name)


@pytest.fixture(scope="session")
def s3_server(service_tmp):
    server = S3Server(service_tmp / "s3").start()
    yield server
    server.stop()


# --- receivers ----------------------------------------------------------------------------------

class WebhookReceiver:
    """Records every POST; answers with ``status`` (a list pops one status per request)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: dict[str, list[int]] = {}  # path -> statuses to answer in turn
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body})
                    queue = receiver.statuses.get(self.path) or []
                    status = queue.pop(0) if queue else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def for_path(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()


class MailBox:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[dict] = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
                import email
                from email import policy

                message = email.message_from_bytes(envelope.content, policy=policy.default)
                box.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                     "subject": message["subject"],
                                     "data": message.get_body(("plain",)).get_content()})
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def to(self, address: str) -> list[dict]:
        return [m for m in self.messages if address in m["to"]]

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="session")
def webhooks():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def mailbox():
    box = MailBox()
    yield box
    box.close()


# --- gallery ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def small_gallery(service_tmp, fixtures_dir) -> Path:
    """Four people, two photos each, one of them 'bad' news; photos read in place (symlinks)."""
    from lookalike.gallery.importer import import_folder

    source = service_tmp / "gallery-src"
    for person, n, _ in GALLERY_PEOPLE:
        (source / person).mkdir(parents=True)
        for photo in sorted((fixtures_dir / "faces" / person).iterdir())[:n]:
            (source / person / photo.name).symlink_to(photo)
    meta = service_tmp / "people.csv"
    meta.write_text("id,name,category\n" + "".join(
        f"{p},{p.replace('_', ' ')},{c}\n" for p, _, c in GALLERY_PEOPLE))
    gallery = service_tmp / "gallery"
    report = import_folder(source, gallery, metadata=meta, workers=1)
    assert report.added == sum(n for _, n, _ in GALLERY_PEOPLE), report.to_dict()
    return gallery


# --- stacks -------------------------------------------------------------------------------------

def _finish_stack(stack: Stack) -> Stack:
    stack.create_key("admin", ["admin", "client"])
    stack.create_key("client", ["client"])
    stack.create_key("other", ["client"])
    stack.create_key("limited", ["client"], rate_limit=5)
    from lookalike.auth import webhook_secret

    stack.secret = SECRET_KEY.encode()
    stack.webhook_secrets = {role: webhook_secret(stack.secret, key_id)
                             for role, key_id in stack.key_ids.items()}
    return stack


@pytest.fixture(scope="session")
def distributed_stack(service_tmp, redis_server, pg_url, s3_server, small_gallery, mailbox):
    data_dir = service_tmp / "distributed"
    port = free_port()
    env = common_env(data_dir, port, mailbox)
    env.update({
        "LOOKALIKE_DATABASE_URL": pg_url,
        "LOOKALIKE_REDIS_URL": redis_server.url,
        "LOOKALIKE_STORAGE": "s3",
        "LOOKALIKE_S3_ENDPOINT_URL": s3_server.endpoint,
        "LOOKALIKE_S3_BUCKET": f"lookalike-test-{os.getpid()}",
        "LOOKALIKE_S3_ACCESS_KEY": S3_ACCESS,
        "LOOKALIKE_S3_SECRET_KEY": S3_SECRET,
    })
    stack = Stack("distributed", f"http://127.0.0.1:{port}", env, data_dir)
    logs = service_tmp / "logs-distributed"
    try:
        published = stack.cli("gallery", "publish", "--gallery", str(small_gallery))
        assert published.returncode == 0, published.stderr
        assert "generation 1" in published.stdout, published.stdout
        for queue in ("encoder", "matcher", "renderer", "notify"):
            args = [LOOKALIKE, "worker", "--queue", queue, "--concurrency", "1", "--loglevel", "INFO"]
            if queue == "notify":
                args.append("--beat")
            stack.procs[queue] = Proc(queue, args, env, logs / f"{queue}.log").start()
        stack.procs["api"] = Proc("api", [LOOKALIKE, "api"], env, logs / "api.log").start()
        wait_ready(stack)
        for queue in ("encoder", "matcher", "renderer", "notify"):
            wait_worker_ready(stack.procs[queue])
        _finish_stack(stack)
    except BaseException:
        print(stack.log_tail(200))
        stack.stop()
        raise
    yield stack
    stack.stop()
    try:
        stack.store.delete_prefix("jobs/")
        stack.store.delete_prefix("gallery/")
    except Exception:  # noqa: BLE001 - best effort on a shared S3 server
        pass


@pytest.fixture(scope="session")
def embedded_stack(service_tmp, small_gallery, mailbox):
    data_dir = service_tmp / "embedded"
    shutil.copytree(small_gallery, data_dir / "gallery")
    port = free_port()
    env = common_env(data_dir, port, mailbox)
    stack = start_serve_stack("embedded", env, data_dir, service_tmp / "logs-embedded")
    try:
        _finish_stack(stack)
    except BaseException:
        print(stack.log_tail(200))
        stack.stop()
        raise
    yield stack
    stack.stop()


@pytest.fixture(params=["distributed", "embedded"])
def stack(request) -> Stack:
    return request.getfixturevalue(f"{request.param}_stack")


@pytest.fixture
def portrait(fixtures_dir) -> Path:
    return fixtures_dir / "bad-inputs" / "baseline.jpg"


@pytest.fixture
def bad_inputs(fixtures_dir) -> Path:
    return fixtures_dir / "bad-inputs"


def dump(obj) -> str:
    return json.dumps(obj, indent=1)[:3000]
