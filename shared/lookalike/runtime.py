"""Everything a service process holds: settings, job store, object store, gallery, queue.

    build_runtime(settings, mode="embedded")     SQLite + folder + in-process stages
    build_runtime(settings, mode="distributed")  the configured database/storage + Celery

The API and the workers each build one at start-up (workers after the fork, once per
process) and pass it to the stage functions of ``lookalike.pipeline``.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lookalike.auth import KeyCache, RateLimiter
from lookalike.config import Settings
from lookalike.errors import ConfigError
from lookalike.galleries import GallerySource, LocalGallerySource, StoreGallerySource
from lookalike.jobstore import Database
from lookalike.metrics import StageMetrics
from lookalike.storage import ObjectStore, open_store

log = logging.getLogger(__name__)

Mode = Literal["embedded", "distributed"]


@dataclass
class Runtime:
    settings: Settings
    mode: Mode
    db: Database
    store: ObjectStore
    secret: bytes
    gallery: GallerySource
    redis: Any | None
    metrics: StageMetrics
    keys: KeyCache
    limiter: RateLimiter
    dispatcher: Any = None  # lookalike.queue.Dispatcher, attached by build_runtime
    extras: dict = field(default_factory=dict)

    @property
    def public_url(self) -> str:
        return self.settings.resolved_public_url

    def close(self) -> None:
        if self.dispatcher is not None and hasattr(self.dispatcher, "close"):
            self.dispatcher.close()
        self.db.dispose()


def load_secret(settings: Settings) -> bytes:
    """LOOKALIKE_SECRET_KEY, or a key generated once into data_dir/secret.key."""
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value()
        if len(value) < 16:
            raise ConfigError("LOOKALIKE_SECRET_KEY must be at least 16 characters")
        return value.encode()
    path = Path(settings.data_dir) / "secret.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)  # atomic; loses quietly to a process that got there first
            log.info("generated a service secret in %s", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()


def connect_redis(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5,
                                health_check_interval=30, retry_on_timeout=True)


def build_runtime(settings: Settings, mode: Mode, *, migrate: bool = False,
                  dispatcher: Any = None) -> Runtime:
    from lookalike.service_config import check_service

    check_service(settings, mode)
    secret = load_secret(settings)
    db = Database(settings.resolved_database_url)
    if migrate:
        db.migrate()
    store = open_store(settings, secret)
    redis = connect_redis(settings.redis_url) if settings.redis_url else None
    gallery: GallerySource
    if mode == "distributed":
        cache = Path(settings.data_dir) / "cache" / f"gallery-{os.getpid()}"
        gallery = StoreGallerySource(settings, store, db, cache_dir=cache)
    else:
        gallery = LocalGallerySource(settings)
    rt = Runtime(settings=settings, mode=mode, db=db, store=store, secret=secret, gallery=gallery,
                 redis=redis, metrics=StageMetrics(redis), keys=KeyCache(db),
                 limiter=RateLimiter(redis))
    if dispatcher is None:
        from lookalike.queue import CeleryDispatcher, InlineDispatcher

        dispatcher = CeleryDispatcher(settings) if mode == "distributed" else InlineDispatcher(rt)
    rt.dispatcher = dispatcher
    return rt
