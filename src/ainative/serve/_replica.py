"""The model replica: loads the model once, batches requests adaptively, reports its load.

::

       edge ──(payload, t_arrival)──> ModelReplica.__call__ ──> _Batcher.pending
                                                                     │ fills to max_batch_size
                                                                     │ or waits batch_wait_ms()
                                                                     v
                     one thread (the "device") ── model(list) ──> results, in order
                                                                     │
    Serve controller <── record_autoscaling_stats() {latency_ms, queue, ┤
                         arrival_rps (the ingress's count), service_ms} │
    metrics store    <── snapshot (latencies, batch sizes, uptime) ─────┤  same tick
    capacity board   <── accelerator utilisation (probe, ~1/s) ─────────┘  under admission only

Each request comes back as ``(status, value)``: ``ok`` with the result, ``reject`` with the reason
when the model refused the input (ValueError, TypeError, KeyError: HTTP 400) or ``error`` (HTTP
500) with the exception's type and an error id; the traceback goes to the replica's log under that
id, never to the client. Results are tuples rather than exceptions so that one bad request in a
batch fails alone: a batch that raises is re-run one request at a time to find it. A request the
edge gave up on (its deadline passed) is dropped before its batch runs. The edge is the ingress
deployment's, or on the one-hop path (``_fastpath.FastReplica``) one in this same process.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import ray

from ainative.policy import autoscaling as scaling_policy
from ainative.policy import batching as batch_policy

REJECTED = (ValueError, TypeError, KeyError)
# Batches the service-time fit looks at, and the endpoint arrival rate an ingress sent: older
# than this and the replica reports 0 (it has seen no request since).
SERVICE_WINDOW_S = 10.0
DEMAND_FRESH_S = 2.0
Result = tuple[str, Any]
log = logging.getLogger("ray.serve")  # the replica's log file, as Serve documents for deployments


def load_model(factory: Callable[[], Any]) -> Callable[[Any], Any]:
    """Call the factory (or class) once; wrap a torch.nn.Module so it takes and returns lists."""
    model = factory()
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return _TorchModel(model)
    if not callable(model):
        raise TypeError(f"the model factory returned {type(model).__name__}, which is not callable;"
                        " return a function, a callable object or a torch.nn.Module")
    return model  # type: ignore[no-any-return]


class _TorchModel:
    """A torch module called with a list of inputs (a batch) and returning a list of outputs."""

    def __init__(self, module: Any) -> None:
        self.module = module.eval()

    def __call__(self, inputs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.module(torch.as_tensor(inputs, dtype=torch.float32)).tolist()


class _Batcher:
    """Groups concurrent requests into model calls run one at a time on a single thread."""

    def __init__(self, call: Callable[[list[Any]], list[Result]], config: batch_policy.BatchingConfig,
                 latency_slo_ms: float | None, latency_now: Callable[[], float | None]) -> None:
        self._call = call
        self._config = config
        self._slo = latency_slo_ms
        self._latency_now = latency_now
        self._pending: list[tuple[Any, asyncio.Future[Result], float]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One worker thread: the emulated device runs one batch at a time, like a GPU stream.
        self._device = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._last_call: concurrent.futures.Future[list[Result]] | None = None  # on the device
        self.histogram: dict[int, int] = {}
        self._last_arrival: float | None = None
        self.mean_gap_ms: float | None = None  # EWMA of the time between arrivals
        # (monotonic end, batch size, device ms) of recent batches: the service-time fit's input
        self.batches: collections.deque[tuple[float, int, float]] = collections.deque(maxlen=256)

    @property
    def queue_length(self) -> int:
        return len(self._pending)

    async def submit(self, item: Any) -> Result:
        now = time.monotonic()
        if self._last_arrival is not None:
            gap = (now - self._last_arrival) * 1000.0
            self.mean_gap_ms = gap if self.mean_gap_ms is None else \
                0.8 * self.mean_gap_ms + 0.2 * gap
        self._last_arrival = now
        if self._config.max_batch_size == 1 and not self._pending and self._device_idle():
            # Nothing to group it with and the device is free: straight to the device, without
            # the batch loop's wake-up (every request's path on an unbatched endpoint).
            return (await self._on_device([item]))[0]
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future, now))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._fill()
            # Requests whose caller gave up (timed out, cancelled) are not worth a model call.
            self._pending = [entry for entry in self._pending if not entry[1].done()]
            if not self._pending:
                continue
            size = min(len(self._pending), self._config.max_batch_size)
            batch, self._pending = self._pending[:size], self._pending[size:]
            try:
                results = await self._on_device([item for item, _, _ in batch])
            except asyncio.CancelledError:  # the loop itself is cancelled: answer, then end
                for _, future, _ in batch:
                    if not future.done():
                        future.set_result(failure("the batch was cancelled"))
                raise
            for (_, future, _), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def _on_device(self, items: list[Any]) -> list[Result]:
        """One model call on the device thread; its results, one per item."""
        self.histogram[len(items)] = self.histogram.get(len(items), 0) + 1
        self._last_call = self._device.submit(self._timed, items)
        try:
            return await asyncio.wrap_future(self._last_call)
        except asyncio.CancelledError:
            raise  # the caller gave up; the device finishes the call on its own
        except BaseException:  # the call itself never raises; this keeps the loop alive
            return [failure("the batch failed")] * len(items)

    def _device_idle(self) -> bool:
        return self._last_call is None or self._last_call.done()

    def _timed(self, items: list[Any]) -> list[Result]:
        """The model call on the device thread, timed: device time is the queueing estimate's
        service time (queue waits and the event loop excluded)."""
        start = time.perf_counter()
        try:
            return self._call(items)
        finally:
            self.batches.append((time.monotonic(), len(items), (time.perf_counter() - start) * 1e3))

    async def _fill(self) -> None:
        """Wait until the batch is full or the oldest request has waited long enough."""
        wait_s = batch_policy.batch_wait_ms(self._config, self._slo, self._latency_now(),
                                            self.mean_gap_ms) / 1000.0
        deadline = self._pending[0][2] + wait_s
        while len(self._pending) < self._config.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                return


class ModelReplica:
    """The body of the model deployment (decorated with ``serve.deployment`` at deploy time)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.started_at = time.time()
        self.replica_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._spec = spec
        self.store = ray.get_actor(spec["store_name"], namespace=spec["namespace"])
        try:
            self._model = load_model(spec["model"])
        except BaseException:
            # deploy() waits on this report, so it fails fast with the replica's own traceback.
            ray.get(self.store.load_failed.remote(self.replica_id, traceback.format_exc()),
                    timeout=10)
            raise
        self.ready_at = time.time()
        self._batched = spec["batching"] is not None
        config = spec["batching"] or batch_policy.BatchingConfig(max_batch_size=1, max_wait_ms=0)
        # End-to-end from the ingress (drives the batching wait) and inside this replica (queue
        # + device: the part more replicas can fix, so the part the autoscaler scales on).
        self._recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)
        self._service: collections.deque[tuple[float, float]] = collections.deque(maxlen=4096)
        self._unsent: list[tuple[float, float]] = []
        self._cold: list[float] = []
        self._completed = 0
        self._failed = 0
        self._ongoing = 0
        self._max_batch = config.max_batch_size if self._batched else 1
        self._demand: tuple[float, float] | None = None  # (monotonic when, endpoint arrivals/s)
        self._service_ms: float | None = None
        self._batcher = _Batcher(self._run_batch, config, spec["latency_slo_ms"], self._latency_ms)
        self._ray_metrics = _RayMetrics(spec["name"])
        self._utilization = _UtilizationReporter(spec.get("board_name"), spec["namespace"],
                                                 self.replica_id)

    async def __call__(self, payload: Any, t_arrival: float,
                       demand_rps: float | None = None) -> Result:
        if demand_rps is not None:
            self._demand = (time.monotonic(), demand_rps)
        self._ongoing += 1
        t_in = time.time()
        try:
            result = await self._batcher.submit(payload)
        finally:
            self._ongoing -= 1
        now = time.time()
        latency_ms = (now - t_arrival) * 1000.0
        self._service.append((now, (now - t_in) * 1000.0))
        if t_arrival < self.started_at:
            # The request arrived before this replica began to start: it waited for a cold start.
            self._cold.append(now - t_arrival)
        self._recent.append((now, latency_ms))
        self._unsent.append((now, latency_ms))
        self._completed += 1
        self._failed += result[0] == "error"
        self._ray_metrics.request(latency_ms, result[0])
        return result

    def _run_batch(self, items: list[Any]) -> list[Result]:
        self._ray_metrics.batch(len(items))
        if not self._batched:
            return [self._call_one(items[0])]
        try:
            outputs = self._model(items)
            if not isinstance(outputs, (list, tuple)) or len(outputs) != len(items):
                got = len(outputs) if isinstance(outputs, (list, tuple)) else type(outputs).__name__
                return [("error", f"the model returned {got} results for a batch of {len(items)};"
                         " a batched model must return a list with one result per input")] * len(items)
            return [("ok", out) for out in outputs]
        except BaseException:
            if len(items) == 1:
                return [_failure()]
        # Re-run one at a time so that only the request the model rejects fails.
        return [self._call_batch_of_one(item) for item in items]

    def _call_batch_of_one(self, item: Any) -> Result:
        try:
            return ("ok", self._model([item])[0])
        except BaseException:
            return _failure()

    def _call_one(self, item: Any) -> Result:
        try:
            return ("ok", self._model(item))
        except BaseException:
            return _failure()

    def _latency_ms(self, window_s: float = 2.0,
                    samples: collections.deque[tuple[float, float]] | None = None) -> float | None:
        cutoff = time.time() - window_s
        values = [ms for t, ms in (self._recent if samples is None else samples) if t >= cutoff]
        return batch_policy.percentile(values, self._spec["slo_percentile"])

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Called by Serve every few hundred ms: the custom metrics our policy reads, and the
        moment to push a snapshot to the endpoint's metrics store."""
        self._push()
        self._utilization.maybe_report()
        latency = self._latency_ms(samples=self._service)
        self._ray_metrics.queue(self._batcher.queue_length)
        return {"latency_ms": latency or 0.0, "queue": float(self._batcher.queue_length),
                "arrival_rps": self._arrival_rps(), "service_ms": self.service_ms()}

    def _arrival_rps(self) -> float:
        """The endpoint's arrival rate as the ingress last counted it (it sees every request,
        including those Serve's router still holds back), 0 once that is stale."""
        if self._demand is None or time.monotonic() - self._demand[0] > DEMAND_FRESH_S:
            return 0.0
        return self._demand[1]

    def service_ms(self) -> float:
        """Device ms per request at the best batch; the last estimate while no batch ran lately
        (so a burst after a quiet spell is sized at once); 0 before any batch ran."""
        cutoff = time.monotonic() - SERVICE_WINDOW_S
        recent = [(n, ms) for t, n, ms in self._batcher.batches.copy() if t >= cutoff]
        if recent:
            self._service_ms = scaling_policy.service_ms(recent, self._max_batch)
        return self._service_ms or 0.0

    def _push(self) -> None:
        snapshot = {"started_at": self.started_at, "ready_at": self.ready_at, "now": time.time(),
                    "latencies": self._unsent, "batch_sizes": dict(self._batcher.histogram),
                    "completed": self._completed, "failed": self._failed,
                    "queue": self._batcher.queue_length, "ongoing": self._ongoing,
                    "cold_starts": self._cold, "service_ms": self._service_ms,
                    "max_batch": self._max_batch}
        self._unsent, self._cold = [], []
        self.store.report.remote(self.replica_id, snapshot)

    def check_health(self) -> None:
        """Serve's health check; a replica whose metrics store vanished is still healthy."""


class _UtilizationReporter:
    """Runs the utilisation probe in this replica's process (``AINATIVE_UTILIZATION_PROBE``, else
    NVML) and sends the reading to the endpoint's capacity board about once a second; its lease
    carries it to admission (idle reclaim). Off without a board or a probe."""

    period_s = 1.0

    def __init__(self, board_name: str | None, namespace: str, replica_id: str) -> None:
        self._board: Any = None
        self._probe: Any = None
        self._replica, self._last = replica_id, 0.0
        if board_name is None:
            return
        from ainative.cost import probes

        try:
            self._probe = probes.probe_from_env()
            self._board = ray.get_actor(board_name, namespace=namespace)
        except Exception as exc:  # a bad probe name or no board: serving goes on without it
            print(f"ainative: utilisation reporting off in replica {replica_id}: {exc}",
                  file=sys.stderr)
            self._board = None

    def maybe_report(self) -> None:
        if self._board is None or self._probe is None:
            return
        now = time.monotonic()
        if now - self._last < self.period_s:
            return
        self._last = now
        try:
            self._board.report_utilization.remote(self._replica, self._probe())
        except Exception:  # the board is being replaced; the next report retries
            self._board = None


def _failure() -> Result:
    kind, err, _ = sys.exc_info()
    if isinstance(err, REJECTED):
        return ("reject", f"{kind.__name__ if kind else 'Error'}: {err}")
    return failure(f"the model raised {kind.__name__ if kind else 'an error'}")


def failure(message: str) -> Result:
    """An ``error`` result: ``message`` and a fresh error id for the client; the same id with the
    current traceback in the replica's log (Serve's ``ray.serve`` logger)."""
    error_id = uuid.uuid4().hex[:12]
    log.error("ainative replica error id %s: %s", error_id, message, exc_info=True)
    return ("error", f"{message} (error id {error_id}; the traceback is in the server log)")


class _RayMetrics:
    """Ray metrics exported by every replica, tagged with the endpoint name."""

    def __init__(self, endpoint: str) -> None:
        from ray.util import metrics

        tags = {"endpoint": endpoint}
        self._latency = metrics.Histogram(
            "ainative_serve_latency_ms", description="request latency at the replica (ms)",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
            tag_keys=("endpoint",))
        self._latency.set_default_tags(tags)
        self._batch = metrics.Histogram(
            "ainative_serve_batch_size", description="requests per model call",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256], tag_keys=("endpoint",))
        self._batch.set_default_tags(tags)
        self._queue = metrics.Gauge("ainative_serve_queue_length",
                                    description="requests waiting for a batch",
                                    tag_keys=("endpoint",))
        self._queue.set_default_tags(tags)
        self._requests = metrics.Counter("ainative_serve_requests",
                                         description="requests by outcome",
                                         tag_keys=("endpoint", "status"))
        self._requests.set_default_tags(tags)

    def request(self, latency_ms: float, status: str) -> None:
        self._latency.observe(latency_ms)
        self._requests.inc(1.0, tags={"status": status})

    def batch(self, size: int) -> None:
        self._batch.observe(size)

    def queue(self, length: int) -> None:
        self._queue.set(length)
