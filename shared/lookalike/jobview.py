"""The public JSON of a job: what GET /v1/jobs/{id}, the event stream, webhooks and the
shared result link show. Artifacts appear as time-limited URLs, never as object keys."""

from __future__ import annotations

from datetime import datetime, timedelta

from lookalike.errors import ERROR_CODES
from lookalike.jobstore.models import FINAL_STATES, Job
from lookalike.storage import ObjectStore

STAGE_OF_STATE = {"queued": "encode", "encoding": "encode", "matching": "match",
                  "rendering": "render"}
SIMILARITY_NOTE = ("similarity 0..1: 0.5 is the face model's same-person threshold; "
                   "look-alikes usually score 0.3-0.5")


def iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="milliseconds") + "Z" if t else None


def absolute(url: str, base_url: str) -> str:
    return url if url.startswith(("http://", "https://")) else base_url.rstrip("/") + url


def job_view(job: Job, store: ObjectStore, *, base_url: str, link_ttl_s: int,
             retention_hours: float | None = None) -> dict:
    view: dict = {
        "id": job.id,
        "state": job.state,
        "stage": None if job.state == "succeeded" else (STAGE_OF_STATE.get(job.state) or job.stage),
        "progress": round(job.progress, 3),
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "finished_at": iso(job.finished_at),
        "options": job.options or {},
        "timings_ms": {k: round(v * 1000, 1) for k, v in (job.timings or {}).items()},
        "error": None,
        "result": None,
        "links": {"self": f"{base_url}/v1/jobs/{job.id}", "events": f"{base_url}/v1/jobs/{job.id}/events"},
    }
    if retention_hours is not None:
        view["expires_at"] = iso(job.created_at + timedelta(hours=retention_hours))
    if job.state == "failed":
        error = {"code": job.error_code or "internal", "message": job.error_message or ""}
        advice = getattr(ERROR_CODES.get(error["code"]), "advice", "")
        if advice:
            error["advice"] = advice
        view["error"] = error
    if job.state in FINAL_STATES or job.result or job.face:
        result: dict = {}
        if job.face:
            result["face"] = job.face
        if job.result:
            result.update(job.result)
            result["similarity_note"] = SIMILARITY_NOTE
        artifacts = {}
        for name, key in sorted((job.artifacts or {}).items()):
            artifacts[name] = absolute(store.url(key, link_ttl_s, filename=key.rsplit("/", 1)[-1]), base_url)
        if artifacts:
            result["artifacts"] = artifacts
            result["artifacts_expire_in_s"] = link_ttl_s
        view["result"] = result or None
    return view
