"""One JSON shape for every refusal: ``{"error": {"code", "message", "advice"?}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.errors import LookalikeError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_body(code: str, message: str, advice: str | None = None) -> dict:
    body = {"code": code, "message": message}
    if advice:
        body["advice"] = advice
    return {"error": body}


_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "image_too_large", 415: "invalid_request", 429: "rate_limited"}


_FASTAPI_PARSE_ERROR = "There was an error parsing the body"
_UNAVAILABLE = {"storage_unavailable": "The photo store is unavailable right now.",
                "database_unavailable": "The job store is unavailable right now.",
                "broker_unavailable": "The job queue is unavailable right now."}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(LookalikeError)
    async def _lookalike_error(_: Request, exc: LookalikeError) -> JSONResponse:
        status = exc.http_status if exc.http_status != 500 else 500
        if status >= 500 and status != 503:
            log.error("request failed: %s", exc.code)
        if exc.code in _UNAVAILABLE:
            # the detail (an object key, a driver's exception) is for the log, not the client
            log.warning("request refused, %s: %s", exc.code, exc.message)
            return JSONResponse(error_body(exc.code, _UNAVAILABLE[exc.code], "Try again in a few seconds."),
                                status_code=503, headers={"Retry-After": "5"})
        headers = {"Retry-After": "5"} if status == 503 else None
        return JSONResponse({"error": exc.to_dict()}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                             for e in exc.errors()[:5])
        return JSONResponse(error_body("invalid_request", problems or "invalid request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "internal")
        message = str(exc.detail)
        if message == _FASTAPI_PARSE_ERROR:  # FastAPI's words do not say what to send instead
            message = "The request body could not be parsed: send UTF-8 JSON (application/json)."
        return JSONResponse(error_body(code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body("internal", "Something went wrong on our side."), status_code=500)
