"""Per-endpoint metrics: a small detached actor that replicas and edges push snapshots to.

Replicas push every autoscaling tick (see ``_replica.ModelReplica._push``); ``EndpointHandle``
reads :meth:`MetricsStore.summary`. Replica-seconds are the sum, over every replica that ever
reported, of the time from the start of its constructor (the model load holds resources too) to
its last report, so replicas that are gone still count what they used. The summary also carries
the endpoint's ``latency_slo_ms`` (given at deploy), so readers (the dashboard) plot latency
against it.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from ainative.policy import batching as batch_policy

HISTORY_S = 120.0


class MetricsStore:
    """Kept as a plain class so it is testable without Ray; wrapped by ``ray.remote`` at deploy."""

    def __init__(self, endpoint: str, latency_slo_ms: float | None = None) -> None:
        self.endpoint = endpoint
        self.latency_slo_ms = latency_slo_ms
        self.created_at = time.time()
        self._replicas: dict[str, dict[str, Any]] = {}
        self._latencies: collections.deque[tuple[float, float]] = collections.deque(maxlen=200_000)
        self._cold_starts: list[float] = []
        self._load_failures: list[tuple[str, str]] = []
        self._edges: dict[str, dict[str, float]] = {}   # source -> its cumulative counters

    def load_failed(self, replica_id: str, trace: str) -> None:
        self._load_failures.append((replica_id, trace))

    def load_failures(self) -> list[tuple[str, str]]:
        return list(self._load_failures)

    def report(self, replica_id: str, snapshot: dict[str, Any]) -> None:
        latencies = snapshot.pop("latencies", [])
        self._latencies.extend(latencies)
        self._cold_starts.extend(snapshot.pop("cold_starts", []))
        self._replicas[replica_id] = snapshot
        cutoff = time.time() - HISTORY_S
        while self._latencies and self._latencies[0][0] < cutoff:
            self._latencies.popleft()

    def report_edge(self, counters: dict[str, float], source: str) -> None:
        """An edge's cumulative counters (4xx, 5xx, shed, retries): the ingress's, or each
        one-hop replica's; the summary adds them up over sources."""
        self._edges[source] = dict(counters)

    def _edge_totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for counters in self._edges.values():
            for key, value in counters.items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def capacity(self) -> float:
        """Requests per second the replicas reporting now can complete at their best batch
        (each: 1000 / its measured service ms); what the ingress's load shedding drains at."""
        now = time.time()
        return sum(1000.0 / r["service_ms"] for r in self._replicas.values()
                   if now - r["now"] < 3.0 and r.get("service_ms"))

    def summary(self, window_s: float = 10.0, pct: tuple[float, ...] = (50, 95, 99)
                ) -> dict[str, Any]:
        now = time.time()
        start = max(now - window_s, self.created_at)
        recent = [ms for t, ms in self._latencies if t >= start]
        fresh = [r for r in self._replicas.values() if now - r["now"] < 3.0]
        span = max(now - start, 1e-6)
        out: dict[str, Any] = {
            "window_s": span,
            "qps": len(recent) / span,
            "queue_length": sum(r["queue"] for r in fresh),
            "ongoing": sum(r["ongoing"] for r in fresh),
            "batch_sizes": batch_policy.merge_histograms(
                r["batch_sizes"] for r in self._replicas.values()),
            "replica_seconds": sum(r["now"] - r["started_at"] for r in self._replicas.values()),
            "requests_total": sum(r["completed"] for r in self._replicas.values()),
            "failed_total": sum(r["failed"] for r in self._replicas.values()),
            "replicas_reporting": len(fresh),
            "cold_starts_s": list(self._cold_starts),
            "model_load_s": [r["ready_at"] - r["started_at"] for r in self._replicas.values()],
            **self._edge_totals(),
            "latency_slo_ms": self.latency_slo_ms,   # the endpoint's SLO (None: none set)
        }
        for p in pct:
            out[f"p{p:g}_ms"] = batch_policy.percentile(recent, p)
        return out
