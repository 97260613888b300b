"""The FastAPI app factory.

    create_app(runtime)      the app over a built runtime (``lookalike serve`` passes its own)
    create_app_from_env()    for ``uvicorn --factory services.api.main:create_app_from_env``:
                             the distributed runtime from LOOKALIKE_* variables
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from lookalike import __version__
from lookalike.jobstore import repo
from lookalike.jobstore.models import STATES
from lookalike.metrics import BUCKETS
from lookalike.runtime import Runtime
from services.api import errors
from services.api.routes import files, gallery, health, jobs, web

log = logging.getLogger(__name__)

DESCRIPTION = """Which celebrity do you resemble? POST a face photo to `/v1/jobs`, then poll
`GET /v1/jobs/{id}`, follow `GET /v1/jobs/{id}/events` (server-sent events), or receive a signed
webhook. Authenticate with `Authorization: Bearer lk_…` (see `lookalike keys create`).

Errors always read `{"error": {"code": …, "message": …}}`; upload codes: `empty_file`,
`unsupported_image`, `corrupt_image`, `image_too_large`; job codes add `no_face`,
`face_too_small`, `internal`."""


class _ServiceCollector:
    """Jobs by state, stage durations and queue depth, read at scrape time."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self):
        jobs = GaugeMetricFamily("lookalike_jobs", "Jobs in the job store by state", labels=["state"])
        try:
            with self.rt.db.session() as s:
                counts = repo.count_by_state(s)
            for state in STATES:
                jobs.add_metric([state], counts.get(state, 0))
        except Exception:  # noqa: BLE001 - a scrape must not fail because a dependency is down
            pass
        yield jobs
        hist = HistogramMetricFamily("lookalike_stage_duration_seconds",
                                     "Seconds a stage took (all worker processes)", labels=["stage"])
        for stage, values in sorted(self.rt.metrics.snapshot().items()):
            buckets = [(str(b), values.get(f"le:{b}", 0.0)) for b in BUCKETS]
            buckets.append(("+Inf", values.get("count", 0.0)))
            hist.add_metric([stage], buckets, values.get("sum", 0.0))
        yield hist
        depth = GaugeMetricFamily("lookalike_queue_depth", "Messages waiting per queue", labels=["queue"])
        try:
            for queue, n in sorted(self.rt.dispatcher.depth().items()):
                depth.add_metric([queue], n)
        except Exception:  # noqa: BLE001
            pass
        yield depth


class _Timing:
    """ASGI middleware: request latency by method, route template and status."""

    def __init__(self, app, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.histogram.labels(scope["method"], path, str(status["code"])).observe(
                time.perf_counter() - started)


def create_app(rt: Runtime, *, on_start=None, on_stop=None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if on_start:
            on_start()
        yield
        if on_stop:
            on_stop()

    # Swagger UI from files shipped in fastapi-offline: /docs works with no CDN reachable
    app = FastAPIOffline(title="Lookalike", version=__version__, description=DESCRIPTION,
                         lifespan=lifespan, docs_url="/docs", redoc_url=None,
                         static_url="/docs-static")
    app.state.runtime = rt
    registry = CollectorRegistry()
    latency = Histogram("lookalike_http_request_duration_seconds", "API request latency",
                        ["method", "route", "status"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
    registry.register(_ServiceCollector(rt))
    app.state.registry = registry
    errors.install(app)
    for module in (jobs, gallery, files, health, web):
        app.include_router(module.router)
    app.add_middleware(_Timing, histogram=latency)
    return app


def create_app_from_env() -> FastAPI:
    """Distributed API from the environment (used by ``lookalike api`` with several workers)."""
    from lookalike.config import get_settings
    from lookalike.runtime import build_runtime

    logging.basicConfig(level=os.environ.get("LOOKALIKE_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    rt = build_runtime(settings, "distributed")
    rt.extras["auth_off"] = os.environ.get("LOOKALIKE__AUTH_OFF") == "1"
    return create_app(rt, on_stop=rt.close)
