"""Tables of the job store. Times are naive UTC (SQLite keeps no zone)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: job states, in order; the last two are final
STATES = ("queued", "encoding", "matching", "rendering", "succeeded", "failed")
FINAL_STATES = ("succeeded", "failed")
RUNNING_STATES = ("queued", "encoding", "matching", "rendering")
#: rough share of the work done when a job enters a state
PROGRESS = {"queued": 0.0, "encoding": 0.05, "matching": 0.4, "rendering": 0.5,
            "succeeded": 1.0, "failed": 1.0}


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    #: the stage running now, or the last one that ran (encode, match, render)
    stage: Mapped[str | None] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    #: when the job last entered a state or a stage (re)started: the reconciler's clock
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    #: re-enqueues of the current stage by the reconciler
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: how many times the current stage was started (redeliveries included)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128))
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(254))
    photo_format: Mapped[str | None] = mapped_column(String(8))
    photo_bytes: Mapped[int | None] = mapped_column(Integer)
    face: Mapped[dict | None] = mapped_column(JSON)
    result: Mapped[dict | None] = mapped_column(JSON)
    artifacts: Mapped[dict | None] = mapped_column(JSON)  # name -> object key
    timings: Mapped[dict] = mapped_column(JSON, default=dict)  # stage -> seconds
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: SHA-256 of the secret part; the secret itself is never stored
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64))  # comma-separated: client, admin
    rate_limit: Mapped[int | None] = mapped_column(Integer)  # per minute; None = setting
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class Delivery(Base):
    """One notification of one job on one channel; its id and body never change."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("job_id", "channel", name="uq_delivery_job_channel"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    key_id: Mapped[str | None] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))  # webhook | email
    event: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), index=True)  # pending sending delivered failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class GalleryState(Base):
    """Generation of the shared gallery in the object store (one row, id 1)."""

    __tablename__ = "gallery_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
