"""Repository functions over the job store; every state change is a compare-and-set.

``transition`` moves a job only from the state a caller expects, so two copies of one task
(a redelivery, a reconciler re-enqueue) can both run but only one of them advances the job.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from lookalike.jobstore.models import (FINAL_STATES, PROGRESS, RUNNING_STATES, ApiKey, Delivery,
                                       GalleryState, Job, utcnow)


def new_id() -> str:
    return uuid.uuid4().hex


# --- jobs -----------------------------------------------------------------------------------

def create_job(s: Session, *, job_id: str, key_id: str | None, options: dict,
               webhook_url: str | None, email: str | None, photo_format: str,
               photo_bytes: int) -> Job:
    now = utcnow()
    job = Job(id=job_id, key_id=key_id, state="queued", progress=0.0, created_at=now,
              updated_at=now, attempts=0, runs=0, options=options, webhook_url=webhook_url,
              email=email, photo_format=photo_format, photo_bytes=photo_bytes, timings={})
    s.add(job)
    return job


_JOB_ID = re.compile(r"[0-9a-f]{32}")


def is_job_id(text: str) -> bool:
    """Job ids are ``new_id()``'s 32 hex digits; anything else (a NUL byte, a path) is no job."""
    return _JOB_ID.fullmatch(text) is not None


def get_job(s: Session, job_id: str, *, include_deleted: bool = False) -> Job | None:
    if not is_job_id(job_id):
        return None
    job = s.get(Job, job_id)
    if job is None or (job.deleted_at is not None and not include_deleted):
        return None
    return job


_READ_JOB = select(*Job.__table__.c).where(Job.__table__.c.id == bindparam("job_id"))


def read_job(s: Session, job_id: str):
    """A job's columns as a read-only row (attribute access like ``Job``), or None when it is
    missing or deleted. Skips the ORM's identity map and instance state: the status poll's path."""
    if not is_job_id(job_id):
        return None
    row = s.execute(_READ_JOB, {"job_id": job_id}).one_or_none()
    if row is None or row.deleted_at is not None:
        return None
    return row


def start_stage(s: Session, job_id: str, accept: Iterable[str], state: str, stage: str,
                worker: str) -> Job | None:
    """Claim a job for a stage: only from ``accept`` states and not deleted; else None."""
    res = s.execute(update(Job).where(Job.id == job_id, Job.state.in_(tuple(accept)),
                                      Job.deleted_at.is_(None))
                    .values(state=state, stage=stage, progress=PROGRESS[state], runs=Job.runs + 1,
                            worker=worker, updated_at=utcnow()))
    if res.rowcount != 1:
        return None
    return s.get(Job, job_id, populate_existing=True)


def transition(s: Session, job_id: str, from_state: str, to_state: str, **values) -> bool:
    """Move a live job from ``from_state`` to ``to_state``; False if it was not there."""
    now = utcnow()
    extra = {"finished_at": now} if to_state in FINAL_STATES else {}
    res = s.execute(update(Job).where(Job.id == job_id, Job.state == from_state,
                                      Job.deleted_at.is_(None))
                    .values(state=to_state, progress=PROGRESS[to_state], updated_at=now,
                            attempts=0, **extra, **values))
    return res.rowcount == 1


def fail_job(s: Session, job_id: str, code: str, message: str) -> bool:
    """Fail a job that is still running (any running state)."""
    now = utcnow()
    res = s.execute(update(Job).where(Job.id == job_id, Job.state.in_(RUNNING_STATES),
                                      Job.deleted_at.is_(None))
                    .values(state="failed", progress=1.0, updated_at=now, finished_at=now,
                            error_code=code, error_message=message[:2000]))
    return res.rowcount == 1


def mark_deleted(s: Session, job_id: str) -> bool:
    """Tombstone: personal fields cleared now, the row itself goes with retention."""
    res = s.execute(update(Job).where(Job.id == job_id, Job.deleted_at.is_(None))
                    .values(deleted_at=utcnow(), webhook_url=None, email=None, face=None,
                            result=None, artifacts=None))
    s.execute(delete(Delivery).where(Delivery.job_id == job_id,
                                     Delivery.status.in_(("pending", "failed"))))
    # a sent notification keeps its row (so a redelivered task never sends it twice), not the
    # result it carried, nor where it went
    s.execute(update(Delivery).where(Delivery.job_id == job_id)
              .values(body="", target="", last_error=None))
    return res.rowcount == 1


def stalled_jobs(s: Session, limits: dict[str, float], limit: int = 200) -> list[Job]:
    """Running jobs whose state has not changed within its per-state limit (seconds)."""
    now = utcnow()
    clauses = [and_(Job.state == state, Job.updated_at < now - timedelta(seconds=secs))
               for state, secs in limits.items()]
    return list(s.scalars(select(Job).where(Job.deleted_at.is_(None), or_(*clauses))
                          .order_by(Job.updated_at).limit(limit)))


def claimed_jobs(s: Session, stage_of_state: dict[str, str], older_than_s: float,
                 limit: int = 200) -> list[Job]:
    """Running jobs that a worker of their current stage has claimed (``stage`` is that state's
    stage and ``worker`` is set) and that have not moved for ``older_than_s`` seconds."""
    before = utcnow() - timedelta(seconds=older_than_s)
    clauses = [and_(Job.state == state, Job.stage == stage) for state, stage in stage_of_state.items()]
    return list(s.scalars(select(Job).where(Job.deleted_at.is_(None), Job.worker.is_not(None),
                                            Job.updated_at < before, or_(*clauses))
                          .order_by(Job.updated_at).limit(limit)))


def bump_attempt(s: Session, job: Job) -> bool:
    """Count a re-enqueue, only if nobody moved the job meanwhile. The job is no longer held by
    its last worker (``worker`` cleared) until a worker claims it again."""
    res = s.execute(update(Job).where(Job.id == job.id, Job.state == job.state,
                                      Job.updated_at == job.updated_at)
                    .values(attempts=Job.attempts + 1, updated_at=utcnow(), worker=None))
    return res.rowcount == 1


def expired_jobs(s: Session, before: datetime, limit: int = 500) -> list[str]:
    return list(s.scalars(select(Job.id).where(Job.created_at < before).limit(limit)))


def purge_job(s: Session, job_id: str) -> None:
    s.execute(delete(Delivery).where(Delivery.job_id == job_id))
    s.execute(delete(Job).where(Job.id == job_id))


def deleted_jobs(s: Session, limit: int = 500) -> list[str]:
    return list(s.scalars(select(Job.id).where(Job.deleted_at.is_not(None)).limit(limit)))


def count_by_state(s: Session) -> dict[str, int]:
    rows = s.execute(select(Job.state, func.count()).where(Job.deleted_at.is_(None))
                     .group_by(Job.state))
    return {state: n for state, n in rows}


# --- deliveries -----------------------------------------------------------------------------

def add_delivery(s: Session, *, job_id: str, key_id: str | None, channel: str, event: str,
                 target: str, body: str, delivery_id: str | None = None) -> Delivery:
    now = utcnow()
    d = Delivery(id=delivery_id or new_id(), job_id=job_id, key_id=key_id, channel=channel,
                 event=event, target=target, body=body, status="pending", attempts=0,
                 next_at=now, created_at=now)
    s.add(d)
    return d


def claim_delivery(s: Session, delivery_id: str, lease_s: float) -> Delivery | None:
    """Take a due delivery for one send; a lapsed lease (a worker died) can be taken again."""
    now = utcnow()
    res = s.execute(update(Delivery).where(
        Delivery.id == delivery_id,
        or_(and_(Delivery.status == "pending", Delivery.next_at <= now),
            and_(Delivery.status == "sending", Delivery.lease_until < now)))
        .values(status="sending", attempts=Delivery.attempts + 1,
                lease_until=now + timedelta(seconds=lease_s)))
    if res.rowcount != 1:
        return None
    return s.get(Delivery, delivery_id, populate_existing=True)


def finish_delivery(s: Session, delivery_id: str, *, ok: bool, error: str | None,
                    retry_at: datetime | None) -> None:
    now = utcnow()
    if ok:
        values = {"status": "delivered", "delivered_at": now, "last_error": None}
    elif retry_at is None:
        values = {"status": "failed", "last_error": error}
    else:
        values = {"status": "pending", "next_at": retry_at, "last_error": error}
    s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.status == "sending")
              .values(lease_until=None, **values))


def due_deliveries(s: Session, limit: int = 200) -> list[str]:
    now = utcnow()
    return list(s.scalars(select(Delivery.id).where(
        or_(and_(Delivery.status == "pending", Delivery.next_at <= now),
            and_(Delivery.status == "sending", Delivery.lease_until < now)))
        .order_by(Delivery.next_at).limit(limit)))


def deliveries_of(s: Session, job_id: str) -> list[Delivery]:
    return list(s.scalars(select(Delivery).where(Delivery.job_id == job_id)))


# --- API keys -------------------------------------------------------------------------------

def add_key(s: Session, *, key_id: str, name: str, secret_hash: str, scopes: str,
            rate_limit: int | None) -> ApiKey:
    key = ApiKey(id=key_id, name=name, secret_hash=secret_hash, scopes=scopes,
                 rate_limit=rate_limit, created_at=utcnow())
    s.add(key)
    return key


def get_key(s: Session, key_id: str) -> ApiKey | None:
    return s.get(ApiKey, key_id)


def list_keys(s: Session) -> list[ApiKey]:
    return list(s.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(s: Session, key_id: str) -> bool:
    res = s.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))
    return res.rowcount == 1


def any_active_key(s: Session) -> bool:
    return s.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))) > 0


# --- gallery generation ---------------------------------------------------------------------

def gallery_generation(s: Session, *, for_update: bool = False) -> int:
    q = select(GalleryState).where(GalleryState.id == 1)
    if for_update:
        q = q.with_for_update()
    row = s.scalar(q)
    if row is None:
        return 0
    return row.generation


def set_gallery_generation(s: Session, generation: int) -> None:
    row = s.get(GalleryState, 1)
    if row is None:
        s.add(GalleryState(id=1, generation=generation, updated_at=utcnow()))
    else:
        row.generation = generation
        row.updated_at = utcnow()
