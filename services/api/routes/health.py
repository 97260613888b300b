"""Liveness, readiness (database, broker, storage) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Database, broker and storage answer",
            responses={503: {"description": "a dependency is down"}})
def readyz(rt: RuntimeDep) -> JSONResponse:
    checks: dict[str, str] = {}

    def probe(name: str, fn) -> None:
        try:
            fn()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            checks[name] = f"down: {type(exc).__name__}"

    probe("database", rt.db.ping)
    probe("storage", rt.store.ping)
    if rt.mode == "distributed":
        probe("broker", lambda: rt.redis.ping())
    else:
        checks["broker"] = "in-process"
    ok = all(v in ("ok", "in-process") for v in checks.values())
    # reported, not required: operators publish the gallery through this same API
    try:
        checks["gallery"] = "missing" if rt.gallery.missing() else "ok"
    except Exception as exc:  # noqa: BLE001
        checks["gallery"] = f"unknown: {type(exc).__name__}"
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                        status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
