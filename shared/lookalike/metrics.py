"""Stage durations, shared between the processes that run stages and the API that exports them.

Workers are separate processes without an HTTP port, so each finished stage adds to a
histogram kept in Redis (``HINCRBY`` per bucket); the API's ``/metrics`` reads it back as a
Prometheus histogram. Without Redis (the embedded default) the counts stay in this process,
which is where the stages run. Metrics never fail a job: Redis errors are swallowed.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
STAGES = ("encode", "match", "render", "notify")
_KEY = "lookalike:metrics:stage:{}"


class StageMetrics:
    def __init__(self, redis=None) -> None:
        self.redis = redis
        self._lock = threading.Lock()
        self._local: dict[str, dict[str, float]] = {}

    def observe(self, stage: str, seconds: float) -> None:
        fields = {f"le:{b}": 1 for b in BUCKETS if seconds <= b}
        try:
            if self.redis is not None:
                pipe = self.redis.pipeline(transaction=False)
                name = _KEY.format(stage)
                for field in fields:
                    pipe.hincrby(name, field, 1)
                pipe.hincrby(name, "count", 1)
                pipe.hincrbyfloat(name, "sum", seconds)
                pipe.execute()
                return
        except Exception as exc:  # noqa: BLE001 - metrics must never fail a stage
            log.debug("stage metric not recorded: %s", type(exc).__name__)
            return
        with self._lock:
            hist = self._local.setdefault(stage, {})
            for field in fields:
                hist[field] = hist.get(field, 0) + 1
            hist["count"] = hist.get("count", 0) + 1
            hist["sum"] = hist.get("sum", 0.0) + seconds

    def snapshot(self) -> dict[str, dict[str, float]]:
        """stage -> {"le:<b>": cumulative count, "count": n, "sum": seconds}."""
        if self.redis is not None:
            out = {}
            try:
                pipe = self.redis.pipeline(transaction=False)
                for stage in STAGES:
                    pipe.hgetall(_KEY.format(stage))
                for stage, raw in zip(STAGES, pipe.execute()):
                    if raw:
                        out[stage] = {(k.decode() if isinstance(k, bytes) else k): float(v)
                                      for k, v in raw.items()}
            except Exception as exc:  # noqa: BLE001
                log.debug("stage metrics not read: %s", type(exc).__name__)
            return out
        with self._lock:
            return {stage: dict(hist) for stage, hist in self._local.items()}
