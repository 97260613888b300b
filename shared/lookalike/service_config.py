"""Start-up checks of the service settings, with messages that say what to set."""

from __future__ import annotations

import logging

from lookalike.config import Settings
from lookalike.errors import ConfigError

log = logging.getLogger(__name__)


def check_service(settings: Settings, mode: str) -> list[str]:
    """Raise ConfigError for settings that cannot work; return warnings for doubtful ones."""
    problems: list[str] = []
    warnings: list[str] = []
    url = settings.resolved_database_url
    if not url.startswith(("sqlite", "postgresql")):
        problems.append("LOOKALIKE_DATABASE_URL must be a postgresql+psycopg://… or sqlite:///… URL")
    if mode == "distributed":
        if not settings.resolved_broker_url:
            problems.append("LOOKALIKE_REDIS_URL is required for `lookalike api` and `lookalike worker` "
                            "(e.g. redis://127.0.0.1:6379/0); use `lookalike serve` to run without servers")
        if url.startswith("sqlite"):
            warnings.append("the job store is a SQLite file: fine on one machine, but set "
                            "LOOKALIKE_DATABASE_URL=postgresql+psycopg://… for a real deployment")
        if settings.storage == "local":
            warnings.append("objects are in a local folder: every API and worker process must see "
                            "the same folder; set LOOKALIKE_STORAGE=s3 for a real deployment")
        if settings.secret_key is None:
            warnings.append("LOOKALIKE_SECRET_KEY is not set: a key generated into data_dir is used, "
                            "which processes on other machines do not share")
    for name in ("redis_url", "broker_url"):
        value = getattr(settings, name)
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            problems.append(f"LOOKALIKE_{name.upper()} must be a redis:// URL, not {value!r}")
    if settings.storage == "s3":
        if settings.s3_endpoint_url and not settings.s3_endpoint_url.startswith(("http://", "https://")):
            problems.append("LOOKALIKE_S3_ENDPOINT_URL must start with http:// or https://")
        if bool(settings.s3_access_key) != bool(settings.s3_secret_key):
            problems.append("set both LOOKALIKE_S3_ACCESS_KEY and LOOKALIKE_S3_SECRET_KEY, or neither")
    if settings.smtp_host is None and settings.smtp_user:
        problems.append("LOOKALIKE_SMTP_USER is set but LOOKALIKE_SMTP_HOST is not")
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        problems.append("LOOKALIKE_PUBLIC_URL must start with http:// or https://")
    if problems:
        raise ConfigError("invalid settings: " + "; ".join(problems))
    if mode == "embedded":
        # the embedded server runs the encoder and renderer stages in-process
        from lookalike.stylegan.stage import check_renderer

        check_renderer(settings)
    for w in warnings:
        log.warning("%s", w)
    return warnings
