"""Container health check for every Lookalike image (Docker HEALTHCHECK and Kubernetes exec probes).

    python /opt/lookalike/healthcheck.py api       GET http://127.0.0.1:$LOOKALIKE_API_PORT/healthz
    python /opt/lookalike/healthcheck.py worker    a Celery worker on this host answers a ping
    python /opt/lookalike/healthcheck.py           decide from PID 1's command line

Exit 0 healthy, 1 unhealthy. Prints one line saying why; never touches images or embeddings.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request


def check_api() -> str | None:
    port = os.environ.get("LOOKALIKE_API_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return None if resp.status == 200 else f"/healthz answered {resp.status}"
    except OSError as exc:
        return f"/healthz unreachable: {exc}"


def check_worker() -> str | None:
    # Workers are named "<queues>-<pid>@<hostname>" by `lookalike worker`; the container's (the
    # pod's) hostname tells which replies are ours. Every worker answers a broadcast ping, so
    # keep the probe period long (a minute) on large fleets.
    from lookalike.queue import celery_app

    me = "@" + socket.gethostname()
    try:
        replies = celery_app().control.ping(timeout=5.0)
    except Exception as exc:  # noqa: BLE001 - broker away: unhealthy, say why
        return f"broker unreachable: {type(exc).__name__}"
    ours = [name for reply in replies for name in reply if name.endswith(me)]
    return None if ours else f"no Celery worker on {socket.gethostname()} answered a ping"


def role_of_pid1() -> str:
    try:
        with open("/proc/1/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return "api"
    return "worker" if b"worker" in argv else "api"


def main(argv: list[str]) -> int:
    role = argv[1] if len(argv) > 1 else role_of_pid1()
    problem = {"api": check_api, "worker": check_worker}[role]()
    print(f"{role}: {problem or 'ok'}")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
