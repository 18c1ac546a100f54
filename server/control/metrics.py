"""Prometheus metrics, on a registry of evaldock's own (never the process-wide default,
so two apps in one process — tests — do not collide).

Requests by surface, operation and status with latency histograms (counted in the
pipeline's hook); jobs by surface and state and the queue depth (read from ``job_view``
at scrape time: one GROUP BY, not a counter to keep in step); engine usage (judge
requests, cache hits, tokens, retries, errors) from each engine's ``usage`` counters; per
judge server URL from the judge's fleet client.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import logging
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.responses import Response

from ..db import Database
from ..errors import VendorErrors
from ..masking import mask_query
from ..pipeline import Call

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
access_log = logging.getLogger("evaldock.access")


_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BUCKET_LABELS = [str(float(b)) for b in _LATENCY_BUCKETS] + ["+Inf"]


class _RequestStats:
    """Requests counted in plain dicts and turned into Prometheus families at scrape
    time: prometheus_client's labels()/inc()/observe() cost ~10 us a request (locks, a
    bucket walk), a tenth of a poll once polls got cheap."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # (surface, operation) -> [per-bucket counts (+Inf last), sum of seconds]
        self.latency: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def observe(self, surface: str, operation: str, status: int, seconds: float) -> None:
        key = (surface, operation, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        entry = self.latency.get((surface, operation))
        if entry is None:
            entry = ([0] * (len(_LATENCY_BUCKETS) + 1), [0.0])
            self.latency[(surface, operation)] = entry
        entry[0][bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        entry[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "evaldock_requests",
            "Requests by surface, operation and status",
            labels=["surface", "operation", "status"],
        )
        for (surface, operation, status), n in list(self.counts.items()):
            requests.add_metric([surface, operation, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(
            "evaldock_request_seconds",
            "Request latency by surface and operation",
            labels=["surface", "operation"],
        )
        for (surface, operation), (counts, total) in list(self.latency.items()):
            cumulative = itertools.accumulate(counts)
            latency.add_metric(
                [surface, operation], list(zip(_BUCKET_LABELS, cumulative, strict=True)), total[0]
            )
        yield latency


class _JudgeFleetStats:
    """Per judge server URL (credentials stripped): requests, failures, outstanding,
    latency, up/down and health checks, from the open judge fleets
    (engines/judge/fleet.py) at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from evaldock.engines.judge import fleet

        servers = fleet.stats()
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "requests": CounterMetricFamily(
                "evaldock_judge_backend_requests", "Judge requests by server", labels=["url"]
            ),
            "failures": CounterMetricFamily(
                "evaldock_judge_backend_failures",
                "Judge requests failed by the server (connection, timeout, 5xx)",
                labels=["url"],
            ),
            "checks": CounterMetricFamily(
                "evaldock_judge_backend_health_checks",
                "Health checks of a server taken out",
                labels=["url"],
            ),
            "outstanding": GaugeMetricFamily(
                "evaldock_judge_backend_outstanding", "Judge requests in flight", labels=["url"]
            ),
            "up": GaugeMetricFamily(
                "evaldock_judge_backend_up", "1: taking requests; 0: taken out", labels=["url"]
            ),
        }
        latency = HistogramMetricFamily(
            "evaldock_judge_backend_seconds", "Judge request latency by server", labels=["url"]
        )
        for s in servers:
            for name, family in families.items():
                family.add_metric([s.label], float(getattr(s, name)))
            latency.add_metric(
                [s.label],
                list(zip(fleet.bucket_labels(), fleet.cumulative(s.buckets), strict=True)),
                s.seconds,
            )
        yield from families.values()
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_stats = _RequestStats()
        self.registry.register(self.request_stats)
        self.registry.register(_JudgeFleetStats())
        self.jobs = Gauge(
            "evaldock_jobs",
            "Jobs by surface and state",
            ["surface", "state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "evaldock_queue_depth", "Jobs queued, not yet claimed", registry=self.registry
        )
        self.engine_usage = Gauge(
            "evaldock_engine_usage",
            "Engine counters (requests, cache_hits, prompt_tokens, completion_tokens, "
            "retries, invalid_outputs, errors)",
            ["engine", "counter"],
            registry=self.registry,
        )

    def observe(self, call: Call, status: int) -> None:
        self.request_stats.observe(call.surface, call.operation_id, status, call.elapsed_ms / 1000)

    async def render(
        self, db: Database, kind_surfaces: Mapping[str, str], engines: Mapping[str, Any]
    ) -> bytes:
        rows = await db.fetchall(
            "SELECT kind, status, COUNT(*) AS n FROM job_view GROUP BY kind, status"
        )
        counts: dict[tuple[str, str], int] = {}
        queued = 0
        for row in rows:
            surface = kind_surfaces.get(row["kind"], row["kind"].split(".")[0])
            key = (surface, row["status"])
            counts[key] = counts.get(key, 0) + int(row["n"])
            if row["status"] == "queued":
                queued += int(row["n"])
        self.jobs.clear()
        for (surface, state), n in counts.items():
            self.jobs.labels(surface, state).set(n)
        self.queue_depth.set(queued)
        for kind, engine in engines.items():
            usage = getattr(engine, "usage", None)
            if (
                usage is not None
                and dataclasses.is_dataclass(usage)
                and not isinstance(usage, type)
            ):
                for counter, value in dataclasses.asdict(usage).items():
                    self.engine_usage.labels(kind, counter).set(value)
        return generate_latest(self.registry)


_PREFIX = secrets.token_hex(8)
_COUNTER = itertools.count(1)


def _next_id() -> str:
    """A process-unique request id: a random prefix per process and a counter (uuid4
    cost ~3% of a poll's CPU)."""
    return f"{_PREFIX}{next(_COUNTER):016x}"


class ObservabilityHook:
    """Counts every request, echoes a request id, and writes the JSON access log."""

    def __init__(self, metrics: Metrics, *, json_log: bool) -> None:
        self.metrics = metrics
        self.json_log = json_log

    async def before(self, call: Call, errors: VendorErrors) -> Response | None:
        call.request_id = call.request.headers.get("x-request-id", "")[:128] or _next_id()
        return None

    def after(self, call: Call, response: Response) -> Response | None:
        # A request refused before the hooks ran (401) still gets an id.
        call.request_id = call.request_id or _next_id()
        response.headers["X-Request-Id"] = call.request_id
        self.metrics.observe(call, response.status_code)
        if self.json_log:
            request = call.request
            access_log.info(
                json.dumps(
                    {
                        "request_id": call.request_id,
                        "surface": call.surface,
                        "operation": call.operation_id,
                        "method": request.method,
                        "path": request.url.path,
                        "query": mask_query(request.url.query),
                        "status": response.status_code,
                        "duration_ms": round(call.elapsed_ms, 3),
                    }
                )
            )
        return None
