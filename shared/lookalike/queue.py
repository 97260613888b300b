"""Queue wiring: Celery over Redis (distributed) or in-process threads (embedded).

One queue per stage so each worker kind scales on its own::

    encode -> queue "encoder"   match -> "matcher"   render -> "renderer"   notify -> "notify"

Messages carry one id (a job id, or a delivery id for ``notify``), nothing else. Tasks are
acknowledged late and rejected back to the queue if their worker process dies
(``task_acks_late`` + ``task_reject_on_worker_lost``); each worker takes one message at a
time (prefetch 1) and runs under a time limit. Transient faults (storage, database, broker)
are retried with exponential backoff; everything else is decided by the stage function.

The task bodies live in ``services/<stage>/tasks.py``; they only load the process runtime and
call ``lookalike.pipeline``. :class:`InlineDispatcher` calls the very same functions in
threads of this process for ``lookalike serve``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from lookalike.config import Settings, get_settings
from lookalike.errors import LookalikeError

if TYPE_CHECKING:
    from lookalike.runtime import Runtime

log = logging.getLogger(__name__)

QUEUES = {"encode": "encoder", "match": "matcher", "render": "renderer", "notify": "notify"}
TASK_NAMES = {stage: f"lookalike.{stage}" for stage in QUEUES}
PERIODIC = {"reconcile": "lookalike.reconcile", "expire": "lookalike.expire",
            "deliver_due": "lookalike.deliver_due"}
TASK_MODULES = ["services.encoder.tasks", "services.matcher.tasks", "services.renderer.tasks",
                "services.notify.tasks"]


class BrokerUnavailable(LookalikeError):
    code = "broker_unavailable"
    http_status = 503


def transient_errors() -> tuple[type[BaseException], ...]:
    """Faults worth retrying: the job store, the object store or the broker is away."""
    from lookalike.jobstore.db import DatabaseUnavailable
    from lookalike.storage import StorageUnavailable

    errors: list[type[BaseException]] = [DatabaseUnavailable, StorageUnavailable, BrokerUnavailable,
                                         ConnectionError, TimeoutError]
    try:
        import redis

        errors.append(redis.exceptions.ConnectionError)
        errors.append(redis.exceptions.TimeoutError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from kombu.exceptions import OperationalError

        errors.append(OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def time_limit(settings: Settings, stage: str) -> int:
    return {"encode": settings.encoder_time_limit_s, "match": settings.matcher_time_limit_s,
            "render": settings.renderer_time_limit_s}.get(stage, settings.notify_time_limit_s)


# --- Celery ---------------------------------------------------------------------------------

def make_celery(settings: Settings):
    from celery import Celery
    from kombu import Queue

    broker = settings.resolved_broker_url or "redis://127.0.0.1:6379/0"
    app = Celery("lookalike", broker=broker, include=TASK_MODULES)
    longest = max(settings.encoder_time_limit_s, settings.matcher_time_limit_s,
                  settings.renderer_time_limit_s, settings.notify_time_limit_s)
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True, result_backend=None,
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_acks_on_failure_or_timeout=True,
        task_queues=[Queue(q) for q in QUEUES.values()],
        task_default_queue="encoder",
        task_routes={TASK_NAMES[s]: {"queue": q} for s, q in QUEUES.items()}
        | {name: {"queue": "notify"} for name in PERIODIC.values()},
        # An unacknowledged message returns to its queue after this long (a worker machine
        # vanished); it must exceed the longest time limit or tasks would run twice.
        broker_transport_options={"visibility_timeout": int(longest * 2 + 60)},
        broker_connection_retry_on_startup=True, broker_connection_max_retries=None,
        broker_pool_limit=10,
        worker_send_task_events=False, worker_hijack_root_logger=False,
        worker_max_tasks_per_child=500, worker_cancel_long_running_tasks_on_connection_loss=False,
        beat_schedule={
            "reconcile": {"task": PERIODIC["reconcile"], "schedule": settings.reconcile_every_s},
            "deliver-due": {"task": PERIODIC["deliver_due"],
                            "schedule": max(1.0, min(settings.webhook_retry_first_s, 30.0))},
            "expire": {"task": PERIODIC["expire"], "schedule": settings.retention_every_s},
        },
    )
    return app


_celery_app = None
_celery_lock = threading.Lock()


def celery_app():
    """The process's Celery app, configured from the settings (no connection is opened)."""
    global _celery_app
    with _celery_lock:
        if _celery_app is None:
            _celery_app = make_celery(get_settings())
        return _celery_app


def stage_task_options(stage: str, settings: Settings | None = None) -> dict:
    settings = settings or get_settings()
    limit = time_limit(settings, stage)
    return {
        "name": TASK_NAMES.get(stage) or PERIODIC[stage],
        "acks_late": True, "reject_on_worker_lost": True,
        "autoretry_for": transient_errors(), "retry_backoff": 2, "retry_backoff_max": 60,
        "retry_jitter": True, "max_retries": 8,
        "time_limit": limit, "soft_time_limit": max(1, limit - 5),
    }


class Dispatcher:
    def send(self, stage: str, arg: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def depth(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class CeleryDispatcher(Dispatcher):
    def __init__(self, settings: Settings, app=None) -> None:
        self.settings = settings
        self.app = app or celery_app()

    def send(self, stage: str, arg: str) -> None:
        try:
            self.app.send_task(TASK_NAMES[stage], args=[arg], queue=QUEUES[stage],
                               retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2,
                                                         "interval_step": 0.5, "interval_max": 1})
        except Exception as exc:  # kombu/redis raise many kinds when the broker is away
            raise BrokerUnavailable(f"could not queue {stage} for {arg}: {type(exc).__name__}") from None

    def depth(self) -> dict[str, int]:
        """Messages waiting in each queue (Redis lists named after the queues)."""
        from lookalike.runtime import connect_redis

        client = getattr(self, "_redis", None)
        if client is None:
            client = self._redis = connect_redis(self.settings.resolved_broker_url)
        pipe = client.pipeline(transaction=False)
        for q in QUEUES.values():
            pipe.llen(q)
        return dict(zip(QUEUES.values(), pipe.execute()))


class InlineDispatcher(Dispatcher):
    """Runs stage functions in this process: one thread per queue, like one worker each."""

    def __init__(self, rt: "Runtime", retries: int = 6) -> None:
        self.rt = rt
        self.retries = retries
        self.executors = {q: ThreadPoolExecutor(1, thread_name_prefix=f"stage-{q}")
                          for q in QUEUES.values()}
        self._pending = {q: 0 for q in QUEUES.values()}
        self._lock = threading.Lock()

    def send(self, stage: str, arg: str) -> None:
        queue = QUEUES[stage]
        with self._lock:
            self._pending[queue] += 1
        self.executors[queue].submit(self._run, stage, arg)

    def _run(self, stage: str, arg: str) -> None:
        from lookalike.pipeline import STAGE_FUNCTIONS

        queue = QUEUES[stage]
        with self._lock:
            self._pending[queue] -= 1
        transient = transient_errors()
        for attempt in range(self.retries + 1):
            try:
                STAGE_FUNCTIONS[stage](self.rt, arg)
                return
            except transient as exc:
                delay = min(30.0, 0.5 * 2 ** attempt)
                log.warning("%s %s: %s; retry in %.1fs", stage, arg, type(exc).__name__, delay)
                time.sleep(delay)
            except Exception:  # noqa: BLE001 - the reconciler will fail the job if it stays stuck
                log.exception("%s %s failed", stage, arg)
                return

    def depth(self) -> dict[str, int]:
        with self._lock:
            return dict(self._pending)

    def close(self) -> None:
        for ex in self.executors.values():
            ex.shutdown(wait=False, cancel_futures=True)


class Scheduler:
    """The periodic tasks of the embedded default (reconcile, retries of deliveries, expiry)."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        from lookalike import pipeline

        s = self.rt.settings
        plan = [(pipeline.reconcile, s.reconcile_every_s),
                (pipeline.deliver_due, max(0.5, min(s.webhook_retry_first_s, 30.0))),
                (pipeline.expire, s.retention_every_s)]
        due = [time.monotonic()] * len(plan)
        while not self._stop.is_set():
            now = time.monotonic()
            for i, (fn, every) in enumerate(plan):
                if now >= due[i]:
                    due[i] = now + every
                    try:
                        fn(self.rt)
                    except Exception:  # noqa: BLE001
                        log.exception("periodic %s failed", fn.__name__)
            self._stop.wait(max(0.05, min(due) - time.monotonic()))
