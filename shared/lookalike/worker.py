"""What a Celery worker process holds: one runtime and the models it needs, loaded once.

The runtime is built after the fork (``worker_process_init``), so no database connection or
thread pool crosses a fork; the face model is loaded there too for encoder processes, and the
gallery index for matcher processes, so the first task does not pay for it.
"""

from __future__ import annotations

import logging
import os
import threading

from lookalike.config import get_settings
from lookalike.runtime import Runtime, build_runtime

log = logging.getLogger(__name__)

_lock = threading.Lock()
_runtime: tuple[int, Runtime] | None = None

#: set by ``lookalike worker --queue …`` so each process preloads what its queues need
QUEUES_ENV = "LOOKALIKE__WORKER_QUEUES"


def worker_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime[0] != os.getpid():
            _runtime = (os.getpid(), build_runtime(get_settings(), "distributed"))
        return _runtime[1]


def preload() -> None:
    rt = worker_runtime()
    queues = set(filter(None, os.environ.get(QUEUES_ENV, "").split(",")))
    if "encoder" in queues:
        from lookalike.faces import get_backend

        get_backend(rt.settings.face_backend)
    if {"encoder", "renderer"} & queues and rt.settings.renderer == "stylegan":
        from lookalike.stylegan.stage import get_models

        get_models(rt.settings)   # once per process, before the first task
    if "matcher" in queues:
        try:
            rt.gallery.index()
        except Exception as exc:  # noqa: BLE001 - no gallery yet is fine; jobs will say so
            log.warning("gallery not loaded at start: %s", exc)


_connected = False


def connect_signals() -> None:
    global _connected
    if _connected:
        return
    _connected = True
    from celery.signals import worker_process_init

    @worker_process_init.connect(weak=False)
    def _init_process(**_kwargs) -> None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - tasks will retry building it and report properly
            log.exception("worker process start-up failed")
        start_heartbeat()


def start_heartbeat() -> threading.Thread:
    """Refresh this process's liveness key in Redis until it dies (see pipeline.beat): the
    first beat before any task is taken, so every claim is made by a process that beats."""
    import time

    from lookalike import pipeline

    def beat() -> None:
        try:
            pipeline.beat(worker_runtime())
        except Exception as exc:  # noqa: BLE001 - Redis away: the next beat tries again
            log.warning("heartbeat failed: %s", type(exc).__name__)

    def loop() -> None:
        while True:
            time.sleep(pipeline.HEARTBEAT_EVERY_S)
            beat()

    beat()
    thread = threading.Thread(target=loop, name="lookalike-heartbeat", daemon=True)
    thread.start()
    return thread
