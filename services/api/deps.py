"""Dependencies as typed aliases, so each route's signature reads like a sentence."""

from __future__ import annotations

import logging
from typing import Annotated, Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from lookalike.auth import ANONYMOUS, SCOPES, Principal
from lookalike.runtime import Runtime
from lookalike.storage import ObjectStore
from services.api.errors import ApiError

log = logging.getLogger(__name__)

_OPEN = Principal(key_id=ANONYMOUS, scopes=frozenset(SCOPES))


# Pure dependencies are ``async def``: FastAPI would run a plain ``def`` one in the threadpool,
# a thread hop per request for nothing.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(rt: RuntimeDep) -> Iterator[Session]:
    with rt.db.session() as session:
        yield session


async def get_store(rt: RuntimeDep) -> ObjectStore:
    return rt.store


SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[ObjectStore, Depends(get_store)]


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def get_principal(request: Request, rt: RuntimeDep) -> Principal:
    """The caller's API key (401 without a valid one), counted against its rate limit (429)."""
    if rt.extras.get("auth_off"):
        principal = _OPEN
    else:
        token = _token(request)
        if not token:
            raise ApiError(401, "unauthorized", "Send an API key: 'Authorization: Bearer lk_…'.",
                           {"WWW-Authenticate": "Bearer"})
        principal = rt.keys.resolve(token)
        if principal is None:
            raise ApiError(401, "unauthorized", "The API key is unknown or revoked.",
                           {"WWW-Authenticate": "Bearer"})
    limit = principal.rate_limit or rt.settings.rate_limit_per_minute
    try:
        allowed, retry_after = rt.limiter.hit(principal.key_id, limit)
    except Exception as exc:  # noqa: BLE001 - Redis away: serve rather than refuse everyone
        log.warning("rate limiter unavailable: %s", type(exc).__name__)
        allowed, retry_after = True, 0
    if not allowed:
        raise ApiError(429, "rate_limited", f"More than {limit} requests this minute; slow down.",
                       {"Retry-After": str(retry_after)})
    return principal


CurrentKey = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: CurrentKey) -> Principal:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "This needs an API key with the admin scope.")
    return principal


AdminKey = Annotated[Principal, Depends(require_admin)]


async def base_url(request: Request, rt: RuntimeDep) -> str:
    """Where links in answers point: LOOKALIKE_PUBLIC_URL, else the address the client used."""
    if rt.settings.public_url:
        return rt.settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


BaseUrl = Annotated[str, Depends(base_url)]
