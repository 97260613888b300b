"""Gallery curation for operators (admin keys): changes reach the matchers without a restart."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from lookalike.errors import GalleryError
from lookalike.galleries import add_person, person_row, remove_person, set_person
from services.api.deps import AdminKey, RuntimeDep
from services.api.errors import ApiError
from services.api.schemas import (ErrorResponse, GalleryListing, Person, PersonAdded, PersonPatch,
                                  error_responses)
from services.api.uploads import BadRequest, read_multipart

# admin keys only (401, 403), counted against their limit (429); uploads are checked (400-415)
router = APIRouter(prefix="/v1/gallery", tags=["gallery"],
                   responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503))

ADD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["id", "photos"],
            "properties": {
                "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                       "description": "Person id, e.g. Tom_Hanks."},
                "name": {"type": "string", "description": "Display name (default: from the id)."},
                "category": {"type": "string", "enum": ["good", "bad"], "default": "good"},
                "photos": {"type": "array", "items": {"type": "string", "format": "binary"}},
            },
        }}},
    }
}


def _not_found(person_id: str) -> ApiError:
    return ApiError(404, "not_found", f"No person {person_id!r} in the gallery.")


@router.get("/people", response_model=GalleryListing, summary="List the gallery",
            responses={403: {"model": ErrorResponse}})
def list_people(_: AdminKey, rt: RuntimeDep) -> dict:
    try:
        gallery = rt.gallery.snapshot()
    except GalleryError:
        return {"generation": None, "people": []}
    people = [person_row(gallery, pid) for pid in sorted(gallery.people)]
    return {"generation": rt.gallery.version() if rt.mode == "distributed" else gallery.generation,
            "people": people}


@router.post("/people", status_code=201, response_model=PersonAdded, openapi_extra=ADD_BODY,
             summary="Add a person (or more photos of one)",
             responses={403: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
async def add_people(request: Request, _: AdminKey, rt: RuntimeDep) -> dict:
    limit = rt.settings.max_upload_bytes
    upload = await read_multipart(request, file_limit=limit, total_file_limit=limit * 4,
                                  file_fields=("photos",))
    person_id = upload.fields.get("id", "").strip()
    if not person_id:
        raise BadRequest("The form needs the person's 'id'.")
    photos = [(f.filename or f"photo{i}", bytes(f.data)) for i, f in enumerate(upload.files)]
    if not photos:
        raise BadRequest("The form needs at least one file in 'photos'.")
    category = upload.fields.get("category", "good").strip() or "good"
    name = upload.fields.get("name", "").strip() or None
    return await run_in_threadpool(
        rt.gallery.edit, lambda g: add_person(g, person_id, name, category, photos, rt.settings))


@router.patch("/people/{person_id}", response_model=Person,
              summary="Set a person's category or name",
              responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
def patch_person(person_id: str, change: PersonPatch, _: AdminKey, rt: RuntimeDep) -> dict:
    try:
        return rt.gallery.edit(lambda g: set_person(g, person_id, category=change.category,
                                                    name=change.name))
    except KeyError:
        raise _not_found(person_id) from None


@router.delete("/people/{person_id}", status_code=204, summary="Remove a person",
               responses={403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
def delete_person(person_id: str, _: AdminKey, rt: RuntimeDep) -> Response:
    try:
        rt.gallery.edit(lambda g: remove_person(g, person_id))
    except KeyError:
        raise _not_found(person_id) from None
    return Response(status_code=204)
