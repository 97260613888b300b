"""Response shapes, for the OpenAPI document at /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

State = Literal["queued", "encoding", "matching", "rendering", "succeeded", "failed"]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. no_face, image_too_large.")
    message: str
    advice: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


_REFUSALS = {400: "The request is malformed (body, form or a field).",
             401: "No API key, or an unknown or revoked one.",
             403: "The key lacks the scope, or the signed link is invalid or expired.",
             404: "No such resource (or not visible to this key).",
             413: "The upload is too large.",
             415: "Not a supported photo, or not multipart/form-data.",
             422: "A parameter or field is invalid.",
             429: "Rate limit reached; see Retry-After.",
             503: "A dependency (job store, object store, broker) is down; retry later."}


def error_responses(*statuses: int) -> dict:
    """OpenAPI ``responses`` for refusals, all with the one error body."""
    return {s: {"model": ErrorResponse, "description": _REFUSALS[s]} for s in statuses}


class JobLinks(BaseModel):
    self: str
    events: str


class JobAccepted(BaseModel):
    id: str
    state: State
    links: JobLinks


class JobStatus(BaseModel):
    id: str
    state: State
    stage: str | None = Field(description="encode, match or render: running now, or where it failed.")
    progress: float = Field(ge=0, le=1)
    created_at: str
    updated_at: str | None
    finished_at: str | None
    expires_at: str | None = None
    options: dict[str, Any]
    timings_ms: dict[str, float] = Field(description="Per stage (encode, match, render), queue wait, total.")
    error: ErrorDetail | None
    result: dict[str, Any] | None = Field(
        description="face, matches (id, name, category, similarity 0-1), good_news, bad_news, "
                    "artifacts (name -> time-limited URL).")
    links: JobLinks


class Person(BaseModel):
    id: str
    name: str
    category: Literal["good", "bad"]
    photos: int


class GalleryListing(BaseModel):
    generation: Any = None
    people: list[Person]


class PersonAdded(BaseModel):
    id: str
    added: list[str]
    failed: list[dict[str, Any]]
    photos: int


class PersonPatch(BaseModel):
    category: Literal["good", "bad"] | None = None
    name: str | None = Field(None, min_length=1, max_length=200)
