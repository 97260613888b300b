"""Jobs: submit a photo, read the job, follow its events, delete it."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from lookalike.auth import Principal
from lookalike.errors import LookalikeError
from lookalike.jobstore import repo
from lookalike.jobstore.models import FINAL_STATES, Job
from lookalike.jobview import job_view
from lookalike.notify import InvalidOption, check_email, check_webhook_url
from lookalike.pipeline import CLIPS, ORIGINAL, delete_job_data, key
from lookalike.queue import transient_errors
from lookalike.runtime import Runtime
from services.api.deps import BaseUrl, CurrentKey, RuntimeDep
from services.api.errors import ApiError
from services.api.schemas import ErrorResponse, JobAccepted, JobStatus, error_responses
from services.api.uploads import check_photo, read_multipart

log = logging.getLogger(__name__)
# every route needs a key (401), counts against its limit (429) and reads the job store (503)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"],
                   responses=error_responses(400, 401, 422, 429, 503))

ERRORS = {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse},
          413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
          422: {"model": ErrorResponse}, 429: {"model": ErrorResponse},
          503: {"model": ErrorResponse}}

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["photo"],
            "properties": {
                "photo": {"type": "string", "format": "binary",
                          "description": "JPEG, PNG, WebP, HEIC/HEIF, GIF, BMP or TIFF; one face."},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 100,
                          "description": "How many celebrities to list (default 5)."},
                "clips": {"type": "string",
                          "description": "Clips to render: 'all' (default), 'none', or a comma list "
                                         "of good, bad, smile."},
                "webhook_url": {"type": "string", "description": "POSTed a signed JSON body when "
                                                                 "the job ends."},
                "email": {"type": "string", "description": "Sent a link to the result."},
            },
        }}},
    }
}


def parse_options(fields: dict[str, str], rt: Runtime) -> dict:
    options: dict = {}
    top_k = fields.get("top_k", "").strip()
    if top_k:
        try:
            value = int(top_k)
        except ValueError:
            raise InvalidOption("top_k must be a whole number from 1 to 100.") from None
        if not 1 <= value <= 100:
            raise InvalidOption("top_k must be from 1 to 100.")
        options["top_k"] = value
    else:
        options["top_k"] = rt.settings.top_k
    clips = fields.get("clips", "all").strip().lower() or "all"
    if clips == "all":
        options["clips"] = list(CLIPS)
    elif clips == "none":
        options["clips"] = []
    else:
        chosen = [c.strip() for c in clips.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in CLIPS]
        if unknown or not chosen:
            raise InvalidOption("clips must be 'all', 'none' or a comma list of good, bad, smile.")
        options["clips"] = [c for c in CLIPS if c in chosen]
    return options


@router.post("", status_code=202, response_model=JobAccepted, responses=ERRORS,
             openapi_extra=UPLOAD_BODY, summary="Submit a photo")
async def submit_job(request: Request, principal: CurrentKey, rt: RuntimeDep, base: BaseUrl,
                     response: Response) -> JobAccepted:
    """Checks the upload at the door (nothing is stored or queued for a refused one), stores
    the photo, creates the job and queues its first stage. Answers 202 with the job's links."""
    job_id = await accept_upload(request, rt, principal.key_id)
    response.headers["Location"] = f"{base}/v1/jobs/{job_id}"
    return JobAccepted(id=job_id, state="queued",
                       links={"self": f"{base}/v1/jobs/{job_id}", "events": f"{base}/v1/jobs/{job_id}/events"})


async def accept_upload(request: Request, rt: Runtime, key_id: str, *, notify: bool = True) -> str:
    """The admission of one photo (shared with the web page's visitor uploads); returns the job
    id. ``notify=False`` ignores webhook and e-mail fields (visitors may not set them)."""
    settings = rt.settings
    upload = await read_multipart(request, file_limit=settings.max_upload_bytes)
    photo = upload.file("photo")
    if photo is None:
        raise ApiError(422, "invalid_request", "The form needs a file field named 'photo'.")
    options = parse_options(upload.fields, rt)
    webhook_url = (upload.fields.get("webhook_url", "").strip() or None) if notify else None
    email = (upload.fields.get("email", "").strip() or None) if notify else None
    if email:
        email = check_email(email)
        if not settings.smtp_host:
            raise InvalidOption("This server does not send e-mail (no SMTP server is configured).")
    data = bytes(photo.data)
    photo.data = bytearray()

    def admit() -> str:
        fmt = check_photo(data, settings)  # the typed input errors: 400/413/415/422
        if rt.gallery.missing():  # every job would fail at the matcher: refuse now, store nothing
            # (the operator's how-to is in the start-up warning and /readyz, not in answers)
            raise ApiError(503, "gallery_missing", "There is no celebrity gallery on this server yet: "
                                                   "its operator has to build or publish one first.")
        if webhook_url:
            check_webhook_url(webhook_url, settings.webhook_allow_list)
        job_id = repo.new_id()
        rt.store.put(key(job_id, ORIGINAL), data, "application/octet-stream")
        try:
            with rt.db.session() as s:
                repo.create_job(s, job_id=job_id, key_id=key_id, options=options,
                                webhook_url=webhook_url, email=email, photo_format=fmt,
                                photo_bytes=len(data))
        except BaseException:
            delete_job_data(rt, job_id)
            raise
        try:
            rt.dispatcher.send("encode", job_id)
        except transient_errors() as exc:  # the job is safe in the store; the reconciler queues it
            log.warning("job %s stored but not queued yet: %s", job_id, type(exc).__name__)
        return job_id

    return await run_in_threadpool(admit)


def _visible(job: Job | None, principal: Principal) -> Job:
    if job is None or (not principal.is_admin and job.key_id != principal.key_id):
        raise ApiError(404, "not_found", "No such job (it may have expired or been deleted).")
    return job


@router.get("/{job_id}", response_model=JobStatus, responses={404: {"model": ErrorResponse}},
            summary="Read a job")
def get_job(job_id: str, principal: CurrentKey, rt: RuntimeDep, base: BaseUrl) -> dict:
    """State, stage, progress, per-stage timings, error, and the result with artifact URLs."""
    with rt.db.read() as session:  # the hot path of polling clients: no transaction
        job = _visible(repo.read_job(session, job_id[:64]), principal)
    return job_view(job, rt.store, base_url=base, link_ttl_s=rt.settings.link_ttl_s,
                    retention_hours=rt.settings.retention_hours)


@router.get("/{job_id}/events", summary="Follow a job (server-sent events)",
            responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": ErrorResponse}})
async def job_events(job_id: str, request: Request, principal: CurrentKey, rt: RuntimeDep,
                     base: BaseUrl) -> StreamingResponse:
    """One ``event: job`` with the job's JSON on every change; the stream ends when the job
    does. A comment line every 15 s keeps proxies from closing an idle stream."""
    job_id = job_id[:64]

    def load() -> dict | None:
        with rt.db.session() as s:
            job = repo.get_job(s, job_id)
            if job is None or (not principal.is_admin and job.key_id != principal.key_id):
                return None
            return job_view(job, rt.store, base_url=base, link_ttl_s=rt.settings.link_ttl_s,
                            retention_hours=rt.settings.retention_hours)

    first = await run_in_threadpool(load)
    if first is None:
        raise ApiError(404, "not_found", "No such job (it may have expired or been deleted).")

    async def stream():
        view, seen, n = first, None, 0
        last_beat = time.monotonic()
        deadline = time.monotonic() + 3600
        while True:
            if view is None:
                yield "event: deleted\ndata: {}\n\n"
                return
            marker = (view["state"], view["progress"], view["updated_at"])
            if marker != seen:
                seen, n = marker, n + 1
                yield f"id: {n}\nevent: job\ndata: {json.dumps(view, separators=(',', ':'))}\n\n"
                last_beat = time.monotonic()
                if view["state"] in FINAL_STATES:
                    return
            if time.monotonic() - last_beat > 15:
                yield ": keep-alive\n\n"
                last_beat = time.monotonic()
            if time.monotonic() > deadline or await request.is_disconnected():
                return
            await asyncio.sleep(0.2)
            view = await run_in_threadpool(load)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.delete("/{job_id}", status_code=204, responses={404: {"model": ErrorResponse}},
               summary="Delete a job and everything it holds")
def delete_job(job_id: str, principal: CurrentKey, rt: RuntimeDep) -> Response:
    """Removes the photo, aligned face, embedding, landmarks and media at once; the job
    answers 404 from then on."""
    job_id = job_id[:64]
    with rt.db.session() as s:
        job = _visible(repo.get_job(s, job_id, include_deleted=True), principal)
        repo.mark_deleted(s, job.id)
    try:
        delete_job_data(rt, job_id)
    except LookalikeError:
        # the tombstone stays; retention removes the objects when the store is back
        raise
    return Response(status_code=204)
