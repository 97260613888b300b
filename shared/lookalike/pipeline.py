"""The stages of one job, by id: what the Celery tasks and the in-process dispatcher both call.

    encode_job(rt, job_id)    original -> aligned crop, landmarks, embedding      (encoder)
    match_job(rt, job_id)     embedding -> matches; copies the targets' crops      (matcher)
    render_job(rt, job_id)    crops -> morph / smile clips, poster                 (renderer)
    deliver(rt, delivery_id)  one webhook POST or e-mail                           (notify)
    reconcile / deliver_due / expire                                               (periodic)

Each stage loads its inputs from the object store by deterministic key, writes its outputs
under ``jobs/<id>/`` with fixed names, and advances the job with a compare-and-set; a
redelivered copy either finds the job already moved on (and does nothing) or rewrites the
same objects. Input problems fail the job with their code; transient faults (storage,
database, broker) propagate so the caller retries with backoff; anything else fails the
job with ``internal`` — a job never stays in a running state.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.errors import InputError, LookalikeError
from lookalike.jobstore import repo
from lookalike.jobstore.models import RUNNING_STATES, Job, utcnow
from lookalike.jobview import job_view
from lookalike.queue import time_limit, transient_errors

log = logging.getLogger(__name__)

CLIPS = ("good", "bad", "smile")


# --- object keys ------------------------------------------------------------------------------

def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/{name}"


ORIGINAL, ALIGNED, FACE, TARGETS = "original", "aligned.jpg", "face.npz", "targets.npz"
LATENT = "latent.npz"  # the visitor's StyleGAN W+ (LOOKALIKE_RENDERER=stylegan only)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _load_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92)
    return buf.getvalue()


# --- claiming and finishing -------------------------------------------------------------------

def _start(rt, job_id: str, accept: tuple[str, ...], state: str, stage: str) -> Job | None:
    with rt.db.session() as s:
        job = repo.start_stage(s, job_id, accept, state, stage, _worker_name())
        if job is None:
            current = repo.get_job(s, job_id, include_deleted=True)
            log.info("%s %s skipped: job is %s", stage, job_id,
                     "gone" if current is None else ("deleted" if current.deleted_at else current.state))
            return None
        s.expunge(job)
        return job


def _after_lost_race(rt, job_id: str) -> None:
    """Our compare-and-set failed: if the job was deleted meanwhile, remove what we wrote."""
    with rt.db.session() as s:
        job = repo.get_job(s, job_id, include_deleted=True)
        deleted = job is None or job.deleted_at is not None
    if deleted:
        rt.store.delete_prefix(job_prefix(job_id))


def _advance(rt, job: Job, from_state: str, to_state: str, next_stage: str | None, **values) -> bool:
    """Move the job on; on a final state, create its notifications in the same transaction."""
    deliveries: list[str] = []
    with rt.db.session() as s:
        if not repo.transition(s, job.id, from_state, to_state, **values):
            moved = False
        else:
            moved = True
            if to_state in ("succeeded", "failed"):
                fresh = s.get(Job, job.id, populate_existing=True)
                deliveries = _create_deliveries(rt, s, fresh)
    if not moved:
        _after_lost_race(rt, job.id)
        return False
    if next_stage:
        _send(rt, next_stage, job.id)
    for delivery_id in deliveries:
        _send(rt, "notify", delivery_id)
    return True


def _fail(rt, job_id: str, code: str, message: str) -> None:
    deliveries: list[str] = []
    with rt.db.session() as s:
        if repo.fail_job(s, job_id, code, message):
            fresh = s.get(Job, job_id, populate_existing=True)
            deliveries = _create_deliveries(rt, s, fresh)
    for delivery_id in deliveries:
        _send(rt, "notify", delivery_id)


def _send(rt, stage: str, arg: str) -> None:
    """Queue the next step; if the broker is away the reconciler/sweeper will do it later."""
    try:
        rt.dispatcher.send(stage, arg)
    except transient_errors() as exc:
        log.warning("could not queue %s %s now (%s); the reconciler will", stage, arg,
                    type(exc).__name__)


def _run_stage(rt, job: Job, stage: str, body) -> None:
    """Run ``body``; typed input errors and bugs fail the job, transient faults propagate."""
    started = time.perf_counter()
    try:
        body()
    except transient_errors():
        raise
    except InputError as exc:
        log.info("%s %s: %s", stage, job.id, exc.code)
        _fail(rt, job.id, exc.code, exc.message)
    except LookalikeError as exc:
        # the detail (file paths, a library's words) is for the operator's log, not the client
        log.warning("%s %s failed: %s: %s", stage, job.id, exc.code, exc.message)
        if exc.code == "gallery":
            _fail(rt, job.id, "gallery", exc.message)
        else:
            _fail(rt, job.id, "internal", f"The {stage} stage could not run on this server "
                                          f"({exc.code}); its operator can see why in the log.")
    except Exception as exc:  # noqa: BLE001 - never leave a job in a running state
        log.exception("%s %s crashed", stage, job.id)
        _fail(rt, job.id, "internal", f"The {stage} stage failed unexpectedly ({type(exc).__name__}).")
    finally:
        rt.metrics.observe(stage, time.perf_counter() - started)


def _timings(job: Job, **new: float) -> dict:
    timings = dict(job.timings or {})
    timings.update({k: float(v) for k, v in new.items()})
    timings["total"] = (utcnow() - job.created_at).total_seconds()
    return timings


# --- stages -----------------------------------------------------------------------------------

def encode_job(rt, job_id: str) -> None:
    from lookalike.stages import encode_image, invert_face

    job = _start(rt, job_id, ("queued", "encoding"), "encoding", "encode")
    if job is None:
        return

    def body() -> None:
        queue_wait = (utcnow() - job.created_at).total_seconds() if job.runs <= 1 else None
        t = time.perf_counter()
        data = rt.store.get(key(job_id, ORIGINAL))
        face = encode_image(data, settings=rt.settings)
        rt.store.put(key(job_id, ALIGNED), _jpeg(face.aligned), "image/jpeg")
        rt.store.put(key(job_id, FACE), _npz(embedding=face.embedding.astype(np.float32),
                                             landmarks=face.landmarks.astype(np.float32),
                                             aligned_landmarks=face.aligned_landmarks.astype(np.float32)))
        summary = face.summary()
        detail = {f"encode.{k}": v for k, v in face.timings.items()}
        if rt.settings.renderer == "stylegan" and _clips(job):
            ti = time.perf_counter()
            rt.store.put(key(job_id, LATENT), invert_face(face.aligned, settings=rt.settings))
            detail["encode.invert"] = time.perf_counter() - ti
        timings = _timings(job, encode=time.perf_counter() - t, **detail)
        if queue_wait is not None:
            timings["queue_wait"] = queue_wait
        _advance(rt, job, "encoding", "matching", "match", face=summary, timings=timings,
                 artifacts={"aligned": key(job_id, ALIGNED)})

    _run_stage(rt, job, "encode", body)


def _clips(job: Job) -> list[str]:
    return list((job.options or {}).get("clips", CLIPS))


def match_job(rt, job_id: str) -> None:
    from lookalike.faces.types import Box, FaceAnalysis  # noqa: F401 - documents the data
    from lookalike.stages import match_face

    job = _start(rt, job_id, ("matching",), "matching", "match")
    if job is None:
        return

    def body() -> None:
        t = time.perf_counter()
        arrays = _load_npz(rt.store.get(key(job_id, FACE)))
        index = rt.gallery.index()
        top_k = int((job.options or {}).get("top_k") or rt.settings.top_k)
        found = index.search(arrays["embedding"], top_k, model=(job.face or {}).get("model"))
        result = found.to_dict()
        clips = _clips(job)
        targets = {name: m for name, m in (("good", found.good_news), ("bad", found.bad_news))
                   if m is not None and name in clips}
        gallery = index.gallery
        landmarks = {}
        for name, match in targets.items():
            crop_key = key(job_id, f"target-{name}.jpg")
            if hasattr(rt.gallery, "crop_key"):
                rt.store.copy(rt.gallery.crop_key(gallery, match.photo), crop_key)
            else:
                rt.store.put(crop_key, rt.gallery.crop_bytes(gallery, match.photo), "image/jpeg")
            landmarks[name] = gallery.landmarks[match.photo].astype(np.float32)
        rt.store.put(key(job_id, TARGETS), _npz(**landmarks))
        timings = _timings(job, match=time.perf_counter() - t)
        render = bool(targets) or "smile" in clips
        if render:
            _advance(rt, job, "matching", "rendering", "render", result=result, timings=timings)
        else:
            _advance(rt, job, "matching", "succeeded", None, result=result, timings=timings)

    _run_stage(rt, job, "match", body)


def render_job(rt, job_id: str) -> None:
    from lookalike.stages import render_morphs

    job = _start(rt, job_id, ("rendering",), "rendering", "render")
    if job is None:
        return

    def body() -> None:
        t = time.perf_counter()
        visitor = np.asarray(Image.open(io.BytesIO(rt.store.get(key(job_id, ALIGNED)))).convert("RGB"))
        points = _load_npz(rt.store.get(key(job_id, FACE)))["aligned_landmarks"]
        target_points = _load_npz(rt.store.get(key(job_id, TARGETS)))
        targets = {}
        for name, pts in target_points.items():
            crop = Image.open(io.BytesIO(rt.store.get(key(job_id, f"target-{name}.jpg")))).convert("RGB")
            targets[name] = (np.asarray(crop), pts)
        smile = "smile" in _clips(job)
        latent = None
        if rt.settings.renderer == "stylegan" and rt.store.exists(key(job_id, LATENT)):
            latent = rt.store.get(key(job_id, LATENT))   # else render_morphs inverts it now
        artifacts = dict(job.artifacts or {})
        with tempfile.TemporaryDirectory(prefix=f"render-{job_id[:8]}-") as tmp:
            paths, clip_timings = render_morphs(visitor, points, targets, Path(tmp),
                                                settings=rt.settings, smile=smile,
                                                visitor_latent=latent)
            for name, path in sorted(paths.items()):
                media_key = key(job_id, f"media/{Path(path).name}")
                rt.store.put_file(media_key, Path(path))
                artifacts[name] = media_key
        detail = {f"render.{k}": v for k, v in (clip_timings or {}).items()}
        timings = _timings(job, render=time.perf_counter() - t, **detail)
        _advance(rt, job, "rendering", "succeeded", None, artifacts=artifacts, timings=timings)

    _run_stage(rt, job, "render", body)


# --- notifications ----------------------------------------------------------------------------

def _create_deliveries(rt, s, job: Job) -> list[str]:
    """One webhook and/or one e-mail per job; the unique (job, channel) keeps it one."""
    from lookalike.storage import signed_query

    if not job.webhook_url and not job.email:
        return []
    existing = {d.channel for d in repo.deliveries_of(s, job.id)}
    view = job_view(job, rt.store, base_url=rt.public_url, link_ttl_s=rt.settings.link_ttl_s,
                    retention_hours=rt.settings.retention_hours)
    event = f"job.{job.state}"
    created = []
    if job.webhook_url and "webhook" not in existing:
        delivery_id = repo.new_id()
        body = json.dumps({"event": event, "delivery_id": delivery_id,
                           "created_at": view["finished_at"], "job": view}, separators=(",", ":"))
        repo.add_delivery(s, job_id=job.id, key_id=job.key_id, channel="webhook", event=event,
                          target=job.webhook_url, body=body, delivery_id=delivery_id)
        created.append(delivery_id)
    if job.email and "email" not in existing and rt.settings.smtp_host:
        ttl = int(rt.settings.retention_hours * 3600)
        link = f"{rt.public_url}/v1/results/{job.id}?{signed_query(rt.secret, job.id, ttl)}"
        if job.state == "succeeded":
            result = job.result or {}
            good = (result.get("good_news") or {}).get("name")
            lines = ["Your Lookalike result is ready.", ""]
            if good:
                lines.append(f"Good news: you look like {good}.")
            lines += ["", f"See your matches and videos: {link}", "",
                      f"The link works for {rt.settings.retention_hours:g} hours; after that your "
                      "photo and results are deleted."]
            subject = "Your Lookalike result is ready"
        else:
            lines = ["We could not finish your Lookalike result.", "",
                     f"{job.error_message or ''}", "", f"Details: {link}"]
            subject = "Your Lookalike photo could not be used"
        body = json.dumps({"subject": subject, "text": "\n".join(lines)})
        d = repo.add_delivery(s, job_id=job.id, key_id=job.key_id, channel="email", event=event,
                              target=job.email, body=body)
        created.append(d.id)
    return created


def deliver(rt, delivery_id: str) -> None:
    """Send one delivery once; on failure schedule the next try (same id, same body)."""
    from lookalike.auth import ANONYMOUS, webhook_secret
    from lookalike.notify import post_webhook, retry_delay, send_email

    settings = rt.settings
    with rt.db.session() as s:
        d = repo.claim_delivery(s, delivery_id, lease_s=settings.webhook_timeout_s * 3 + 10)
        if d is None:
            return
        s.expunge(d)
    started = time.perf_counter()
    if d.channel == "webhook":
        secret = webhook_secret(rt.secret, d.key_id or ANONYMOUS)
        ok, error, retry = post_webhook(d.target, d.body.encode(), secret, d.id,
                                        timeout_s=settings.webhook_timeout_s,
                                        allow=settings.webhook_allow_list)
    else:
        message = json.loads(d.body)
        try:
            send_email(settings, d.target, message["subject"], message["text"])
            ok, error, retry = True, None, False
        except Exception as exc:  # noqa: BLE001 - smtplib raises OSError and SMTPException kinds
            ok, error, retry = False, f"{type(exc).__name__}", True
    rt.metrics.observe("notify", time.perf_counter() - started)
    retry_at = None
    if not ok and retry:
        age = (utcnow() - d.created_at).total_seconds()
        delay = retry_delay(d.attempts, settings.webhook_retry_first_s, settings.webhook_retry_max_s)
        if age + delay <= settings.webhook_give_up_s:
            retry_at = utcnow() + timedelta(seconds=delay)
    if not ok:
        log.info("delivery %s (%s) try %d failed: %s%s", d.id, d.channel, d.attempts, error,
                 "" if retry_at else "; giving up")
    with rt.db.session() as s:
        repo.finish_delivery(s, d.id, ok=ok, error=error, retry_at=retry_at)


def deliver_due(rt) -> int:
    """Periodic: send deliveries whose retry time has come (or whose sender died)."""
    with rt.db.session() as s:
        due = repo.due_deliveries(s)
    for delivery_id in due:
        _send(rt, "notify", delivery_id)
    return len(due)


# --- periodic ---------------------------------------------------------------------------------

STAGE_FOR_STATE = {"queued": "encode", "encoding": "encode", "matching": "match",
                   "rendering": "render"}


def stall_limits(settings) -> dict[str, float]:
    return {state: time_limit(settings, stage) + settings.stall_grace_s
            for state, stage in STAGE_FOR_STATE.items()}


# --- worker liveness ----------------------------------------------------------------------
# Each worker process (distributed) refreshes a key in Redis while it lives; a job claimed by a
# process whose key has expired was lost with that process (a node gone, the whole worker
# SIGKILLed), and is re-enqueued within seconds instead of after its stage's time limit.
HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_TTL_S = 15


def heartbeat_key(worker: str) -> str:
    return f"lookalike:alive:{worker}"


def beat(rt) -> None:
    """Say that this process is alive (called every HEARTBEAT_EVERY_S by the worker)."""
    rt.redis.set(heartbeat_key(_worker_name()), "1", ex=HEARTBEAT_TTL_S)


def orphaned_jobs(rt) -> list[Job]:
    """Claimed jobs whose worker process no longer beats (distributed mode only)."""
    if rt.redis is None:
        return []
    running = {state: stage for state, stage in STAGE_FOR_STATE.items() if state != "queued"}
    with rt.db.session() as s:
        claimed = repo.claimed_jobs(s, running, older_than_s=HEARTBEAT_TTL_S)
        for job in claimed:
            s.expunge(job)
    if not claimed:
        return []
    pipe = rt.redis.pipeline(transaction=False)
    for job in claimed:
        pipe.exists(heartbeat_key(job.worker))
    return [job for job, alive in zip(claimed, pipe.execute()) if not alive]


def reconcile(rt) -> dict:
    """Re-enqueue jobs whose stage has not moved within its time limit, or whose worker died;
    give up after a few tries."""
    settings = rt.settings
    requeued, failed = [], []
    with rt.db.session() as s:
        stalled = repo.stalled_jobs(s, stall_limits(settings))
        for job in stalled:
            s.expunge(job)
    seen = {job.id for job in stalled}
    orphans = [job for job in orphaned_jobs(rt) if job.id not in seen]
    if orphans:
        log.warning("reconciler: %d jobs claimed by workers that stopped beating: %s",
                    len(orphans), ", ".join(sorted({job.worker for job in orphans})))
    for job in stalled + orphans:
        if job.attempts >= settings.reconcile_max_tries:
            _fail(rt, job.id, "internal",
                  f"The {STAGE_FOR_STATE[job.state]} stage did not finish after "
                  f"{job.attempts + 1} tries.")
            failed.append(job.id)
            continue
        with rt.db.session() as s:
            bumped = repo.bump_attempt(s, job)
        if bumped:
            _send(rt, STAGE_FOR_STATE[job.state], job.id)
            requeued.append(job.id)
    if requeued or failed:
        log.warning("reconciler: re-enqueued %d stalled jobs, failed %d", len(requeued), len(failed))
    return {"requeued": requeued, "failed": failed}


def resume(rt) -> int:
    """At start-up of the embedded server: every unfinished job is picked up again at once."""
    with rt.db.session() as s:
        from sqlalchemy import select

        jobs = list(s.execute(select(Job.id, Job.state).where(Job.state.in_(RUNNING_STATES),
                                                              Job.deleted_at.is_(None))))
    for job_id, state in jobs:
        _send(rt, STAGE_FOR_STATE[state], job_id)
    deliver_due(rt)
    return len(jobs)


def delete_job_data(rt, job_id: str) -> None:
    """Remove every object of a job (original, crops, embedding, media)."""
    rt.store.delete_prefix(job_prefix(job_id))


def expire(rt) -> dict:
    """Retention: jobs older than the setting lose their objects, embedding and row;
    deleted jobs (tombstones) lose their row once their objects are gone."""
    before = utcnow() - timedelta(hours=rt.settings.retention_hours)
    with rt.db.session() as s:
        old = repo.expired_jobs(s, before)
        gone = repo.deleted_jobs(s)
    purged = 0
    for job_id in dict.fromkeys(old + gone):
        delete_job_data(rt, job_id)
        with rt.db.session() as s:
            repo.purge_job(s, job_id)
        purged += 1
    if purged:
        log.info("retention: purged %d jobs", purged)
    return {"purged": purged}


STAGE_FUNCTIONS = {"encode": encode_job, "match": match_job, "render": render_job, "notify": deliver}
