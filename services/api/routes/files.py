"""Signed, expiring links: local-folder objects (embedded default) and shared results."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from lookalike.jobstore import repo
from lookalike.jobview import job_view
from lookalike.storage import LocalStore, guess_type, verify_signed
from services.api.deps import BaseUrl, RuntimeDep
from services.api.errors import ApiError
from services.api.schemas import ErrorResponse, JobStatus

router = APIRouter(tags=["links"])

_EXPIRED = "The link is invalid or has expired."


@router.get("/v1/files/{key:path}", summary="An object of the local store, by signed link",
            response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}, "video/mp4": {}, "image/webp": {}}},
                       403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
def get_file(key: str, rt: RuntimeDep, exp: str | None = None, sig: str | None = None) -> FileResponse:
    store = rt.store
    if not isinstance(store, LocalStore):
        raise ApiError(404, "not_found", "Artifacts are served by the object store's own links.")
    if not store.verify(key, exp, sig):
        raise ApiError(403, "link_expired", _EXPIRED)
    try:
        path = store.path(key)
    except ValueError:
        raise ApiError(403, "link_expired", _EXPIRED) from None
    if not path.is_file():
        raise ApiError(404, "not_found", "The file is gone (the job was deleted or expired).")
    return FileResponse(path, media_type=guess_type(key), filename=path.name,
                        content_disposition_type="inline")


@router.get("/v1/results/{job_id}", response_model=JobStatus, summary="A shared result, by signed link",
            responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
def shared_result(job_id: str, rt: RuntimeDep, base: BaseUrl, exp: str | None = None,
                  sig: str | None = None) -> dict:
    """The link sent by e-mail: the job's result without an API key, until it expires."""
    if not verify_signed(rt.secret, job_id, exp, sig):
        raise ApiError(403, "link_expired", _EXPIRED)
    with rt.db.session() as s:
        job = repo.get_job(s, job_id[:64])
        if job is None:
            raise ApiError(404, "not_found", "The result is gone (deleted or expired).")
        return job_view(job, rt.store, base_url=base, link_ttl_s=rt.settings.link_ttl_s,
                        retention_hours=rt.settings.retention_hours)
