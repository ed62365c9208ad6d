"""An endpoint's accelerators under admission: the leases behind its replicas.

Ray Serve runs our autoscaling policy inside its own controller, not in the driver, and admission
(the live scheduler, the cost guard) is installed in the driver. So the two meet at a mailbox::

    Serve controller: EndpointPolicy(ctx) ── want N, running R ──> CapacityBoard  (named actor)
                      replicas = min(decision, cap)  <── cap ──────┘   ^ utilisation per replica
                                                                       │ (ModelReplica, ~1/s)
    driver: CapacityController thread, every tick_s (0.25 s; each lease polled ~1/s)
      base lease    min_replicas bundles, not preemptible, admitted by deploy() before Serve runs
      extra leases  one per replica above min_replicas (kind "endpoint", preemptible); asked for
                    when the policy wants more than is admitted, each a request the scheduler
                    decides in its pass beside training; refused -> cap unchanged, ``why`` recorded
      release       an extra lease goes once Serve runs no more replicas than stay admitted
                    (scale-down, or a StopRequest: preemption or idle reclaim -> toward min)
      base stop     any stop deletes the endpoint (a min_replicas budget stops the base lease
                    only at its cap: the guardrails stop the extras first, early enough to keep
                    the base's spend to ``expected_duration_s`` inside the budget)
      own budget    Endpoint(budget=...): "stop" deletes at the cap; "min_replicas" drops every
                    extra and refuses scale-ups once what is left is the base's spend to
                    ``expected_duration_s``, and deletes at the cap (with no expected_duration_s
                    the base serves on past the cap, flagged once)

Every lease is metered by whatever admission meters (the scheduler's ledger guardrails, or
``cost.enable``), per replica by accelerator type and fraction. An endpoint ``Budget`` covers all
of its leases together: the controller sums their held GPU-seconds (priced with the same
``PriceTable``) and applies ``warn_at`` and ``action`` itself.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ainative import errors, events
from ainative.cluster import background
from ainative.policy import pricing
from ainative.scheduling import protocol

log = logging.getLogger("ainative.serve")
NAMESPACE = "ainative"
FRESH_S = 5.0          # utilisation reports older than this are ignored


def board_name(endpoint: str) -> str:
    return f"ainative-serve-capacity:{endpoint}"


class CapacityBoard:
    """The mailbox actor: the policy's wish, Serve's replica count, the admitted cap and the
    replicas' utilisation readings. Holds no decisions."""

    def __init__(self, cap: int) -> None:
        self.cap, self.want, self.running, self.seen_s = cap, cap, cap, 0.0
        self.util: dict[str, tuple[float, float]] = {}

    def exchange(self, want: int, running: int) -> int:
        """Called by the autoscaling policy each tick: report, and learn the cap."""
        self.want, self.running, self.seen_s = int(want), int(running), time.time()
        return self.cap

    def report_utilization(self, replica: str, value: float | None) -> None:
        if value is not None:
            self.util[replica] = (time.time(), float(value))

    def sync(self, cap: int) -> dict[str, Any]:
        """Called by the controller: set the cap, read the rest."""
        self.cap = int(cap)
        now = time.time()
        fresh = [v for t, v in self.util.values() if now - t <= FRESH_S]
        return {"want": self.want, "running": self.running, "seen_s": self.seen_s,
                "utilization": sum(fresh) / len(fresh) if fresh else None}


@dataclasses.dataclass
class _Extra:
    lease: protocol.Lease
    admitted_s: float
    stop: protocol.StopRequest | None = None
    stop_s: float = 0.0


@dataclasses.dataclass
class LeaseRecord:
    """One lease as held: for reports and the metering check (GPU-seconds x price)."""

    name: str
    gpus: dict[str, float]
    admitted_s: float
    released_s: float | None = None


class CapacityController:
    """Holds an endpoint's leases and sets the replica cap (see the module docstring)."""

    tick_s = 0.25
    lease_poll_s = 1.0
    scale_up_wait_s = 30.0
    """How long one scale-up request waits in the scheduler's queue before it is asked again."""
    max_inflight = 4

    def __init__(self, endpoint: Any, admission: protocol.Admission,
                 on_stop: Callable[[str], None]) -> None:
        self.endpoint, self.admission, self.on_stop = endpoint, admission, on_stop
        self.name: str = endpoint.name
        auto = endpoint.autoscaling
        self.min_replicas, self.max_replicas = auto.min_replicas, auto.max_replicas
        self.initial = auto.initial_replicas if auto.initial_replicas is not None else max(
            auto.min_replicas, 1)
        self.base: protocol.Lease | None = None
        self.extras: list[_Extra] = []
        self.records: list[LeaseRecord] = []
        self._open: dict[int, LeaseRecord] = {}
        self._last_refusal = ""
        self.why = ""
        self.hold: str | None = None          # "budget" | "idle": scale-ups refused
        self.board: Any = None
        self._lock = threading.RLock()
        self._inflight = 0
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_poll = 0.0
        self._seen: dict[str, Any] = {}
        self._budget_warned = False
        self._overrun_flagged = False
        self._admitted_s: float | None = None
        self._prices = _prices()

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def cap(self) -> int:
        with self._lock:
            return (self.min_replicas if self.base is not None else 0) + sum(
                1 for e in self.extras if e.stop is None)

    def admit_initial(self, timeout_s: float) -> None:
        """Block until min_replicas (the base lease) and the initial extras are admitted."""
        import ray

        self._check_floor_fits()
        if self.min_replicas > 0:
            self.base = self.admission.admit(dataclasses.replace(
                self._request(self.name, self.min_replicas, False),
                expected_duration_s=getattr(self.endpoint, "expected_duration_s", None)),
                timeout_s=timeout_s)
            self._record(self.base, self.min_replicas)
        for _ in range(self.initial - self.min_replicas):
            lease = self.admission.admit(self._extra_request(), timeout_s=timeout_s)
            self._record(lease, 1)
            self._add_extra(lease)
        self._admitted_s = time.time()
        events.emit(self.name, "admitted", queue=self.endpoint.queue, replicas=self.cap)
        remote = ray.remote(num_cpus=0, max_restarts=-1)(CapacityBoard)
        self.board = remote.options(name=board_name(self.name), namespace=NAMESPACE,
                                    lifetime="detached", get_if_exists=True).remote(self.cap)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"capacity-{self.name}",
                                        daemon=True)
        background.register(self._stop, self._thread)
        self._thread.start()

    def close(self, outcome: str = "succeeded") -> None:
        """Stop the loop, release every lease, remove the board (idempotent)."""
        import ray

        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._lock:
            extras, self.extras = self.extras, []
            base, self.base = self.base, None
        for extra in reversed(extras):
            self._release(extra.lease, outcome if extra.stop is None else f"stopped: {extra.stop.reason}")
        if base is not None:
            self._release(base, outcome)
        if self.board is not None:
            try:
                ray.kill(self.board)
            except Exception:  # already gone with the cluster
                pass
            self.board = None

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"admitted": self.cap, "want": self._seen.get("want"),
                    "running": self._seen.get("running"), "why": self.why, "hold": self.hold,
                    "pending_requests": self._inflight,
                    "leases": [dataclasses.asdict(r) for r in self.records]}

    # --- requests --------------------------------------------------------------------------------
    def _request(self, name: str, replicas: int, preemptible: bool) -> protocol.JobRequest:
        ep = self.endpoint
        idle = ep.idle if preemptible and isinstance(ep.idle, pricing.IdlePolicy) else None
        return protocol.JobRequest(
            name=name, kind="endpoint", bundles=(ep.resources,) * replicas, queue=ep.queue,
            preemptible=preemptible, metadata={"endpoint": ep.name, "idle": idle})

    def _extra_request(self) -> protocol.JobRequest:
        with self._lock:
            self._seq += 1
            seq = self._seq
        # a scale-up still queued when scale-ups stop (budget or idle hold, delete) leaves the
        # queue at once instead of being admitted, charged and released a moment later
        return dataclasses.replace(self._request(f"{self.name}+{seq}", 1, True),
                                   cancelled=lambda: self.hold is not None or self._stop.is_set())

    def _record(self, lease: protocol.Lease, replicas: int) -> None:
        gpus, _ = pricing.allocation_of((self.endpoint.resources,) * replicas)
        name = str(getattr(lease, "job_id", "") or f"{self.name}#{len(self.records)}")
        with self._lock:
            # the scheduler's admission time (where the ledger's charge begins), not when this
            # side learned of it: under a CPU hog that came up to a second later per lease
            self._open[id(lease)] = rec = LeaseRecord(name, gpus,
                                                      protocol.held_since(lease, time.time()))
            self.records.append(rec)

    def _add_extra(self, lease: protocol.Lease) -> None:
        with self._lock:
            self.extras.append(_Extra(lease, time.time()))

    def _release(self, lease: protocol.Lease, outcome: str) -> None:
        try:
            lease.release(outcome)
        except Exception as exc:  # scheduler gone: its lease timeout frees the job
            log.warning("endpoint %s: could not release a lease: %s", self.name, exc)
        with self._lock:
            rec = self._open.pop(id(lease), None)
            if rec is not None:
                rec.released_s = protocol.held_until(lease, time.time())

    def _ask(self) -> None:
        """One scale-up request, decided by admission; runs on its own thread."""
        try:
            lease = self.admission.admit(self._extra_request(), timeout_s=self.scale_up_wait_s)
        except errors.AinativeError as exc:
            reason = str(getattr(exc, "reason", None) or exc.message)
            with self._lock:
                self._inflight -= 1
                if exc.details.get("cancelled"):      # withdrawn by the hold: its why stands
                    return
                if reason != self._last_refusal:
                    self._last_refusal = reason
                    events.emit(self.name, "scale_up_waiting", replicas=self.cap, reason=reason)
                self.why = f"scale-up beyond {self.cap} replica(s) not admitted: {reason}"
            return
        self._record(lease, 1)
        with self._lock:
            self._inflight -= 1
            wanted = self._seen.get("want", 0) > self.cap and self.hold is None \
                and not self._stop.is_set()
            if wanted:
                self._add_extra(lease)
                self.why, self._last_refusal = "", ""
            seen = dict(self._seen)
        events.emit(self.name, "scale_up_admitted" if wanted else "scale_up_unneeded",
                    replicas=self.cap, want=seen.get("want"), running=seen.get("running"))
        if not wanted:
            self._release(lease, "succeeded")

    # --- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        import ray

        while not self._stop.wait(self.tick_s):
            if not ray.is_initialized():   # the driver shut Ray down: a call now ends the process
                return
            try:
                self.step()
            except Exception as exc:  # a restarting scheduler or board: the next tick retries
                log.warning("endpoint %s capacity tick failed: %s", self.name, exc)

    def step(self) -> None:
        """One tick: read the board, poll leases (~1/s), release surplus, ask for more."""
        seen = self._sync_board()
        with self._lock:
            self._seen = seen
        now = time.monotonic()
        if now - self._last_poll >= self.lease_poll_s:
            self._last_poll = now
            if self._poll(seen.get("utilization")):
                return
        self._release_surplus(seen)
        self._scale_up(seen)

    def _sync_board(self) -> dict[str, Any]:
        import ray

        return dict(ray.get(self.board.sync.remote(self.cap)))

    def _poll(self, utilization: float | None) -> bool:
        """Poll every lease; act on stop requests. True when the endpoint was stopped."""
        usage = protocol.Usage(bundles_in_use=1, accelerator_utilization=utilization)
        if self.hold == "idle" and utilization is not None and self.endpoint.idle is not None \
                and utilization >= self.endpoint.idle.threshold:
            self.hold, self.why = None, ""
        if self.base is not None:
            stop = self.base.poll(dataclasses.replace(usage, bundles_in_use=self.min_replicas))
            if stop is not None and self._base_stopped(stop):
                return True
        for extra in list(self.extras):
            if extra.stop is None:
                stop = extra.lease.poll(usage)
                if stop is not None:
                    self._extra_stopped(extra, stop)
        return self._check_budget()

    def _extra_stopped(self, extra: _Extra, stop: protocol.StopRequest) -> None:
        with self._lock:
            extra.stop, extra.stop_s = stop, time.monotonic()
            if stop.reason in ("idle", "budget"):
                self.hold = stop.reason
            self.why = f"replica above min_replicas stopped ({stop.reason}): {stop.message}"
        events.emit(self.name, "scaled_down", reason=stop.reason, message=stop.message,
                    replicas=self.cap)

    def _base_stopped(self, stop: protocol.StopRequest) -> bool:
        """The base lease must go (a stop from admission, or the endpoint's budget at its cap):
        the endpoint is deleted. Always True."""
        events.emit(self.name, "stopped", reason=stop.reason, message=stop.message)
        self._stop.set()
        threading.Thread(target=self.on_stop, args=(f"stopped: {stop.reason}",), daemon=True).start()
        return True

    def _to_min(self, reason: str, message: str) -> None:
        with self._lock:
            if self.hold == reason and all(e.stop for e in self.extras):
                return
            self.hold = reason
            self.why = f"held at min_replicas={self.min_replicas} ({reason}): {message}"
            now = time.monotonic()
            for extra in self.extras:
                if extra.stop is None:
                    extra.stop, extra.stop_s = protocol.StopRequest(reason, message=message), now
        events.emit(self.name, "scaled_to_min", reason=reason, message=message,
                    replicas=self.min_replicas)

    def _release_surplus(self, seen: dict[str, Any]) -> None:
        """Release stopped extras and extras the policy no longer wants, newest first, once
        Serve runs no more replicas than stay admitted (or a stop's grace is over)."""
        running, want = int(seen.get("running", 0)), int(seen.get("want", 0))
        now = time.monotonic()
        go: list[_Extra] = []
        with self._lock:
            for extra in list(self.extras):
                if extra.stop is not None and (running <= self.cap or
                                               now - extra.stop_s >= min(extra.stop.grace_s, 30.0)):
                    self.extras.remove(extra)
                    go.append(extra)
            live = [e for e in self.extras if e.stop is None]
            while live and self.cap > max(want, self.min_replicas) and running <= self.cap - 1:
                extra = live.pop()
                self.extras.remove(extra)
                go.append(extra)
        for extra in go:
            self._release(extra.lease, "succeeded" if extra.stop is None else
                          f"stopped: {extra.stop.reason}")
            events.emit(self.name, "extra_released", replicas=self.cap, want=want, running=running,
                        reason="unneeded" if extra.stop is None else extra.stop.reason)

    def _scale_up(self, seen: dict[str, Any]) -> None:
        want = min(int(seen.get("want", 0)), self.max_replicas)
        with self._lock:
            if self.hold is not None:
                if want > self.cap:
                    self.why = self.why or f"scale-ups refused ({self.hold})"
                return
            room = min(want - self.cap - self._inflight, self.max_inflight - self._inflight)
            self._inflight += max(0, room)
        for _ in range(max(0, room)):
            threading.Thread(target=self._ask, name=f"scale-up-{self.name}", daemon=True).start()

    # --- the endpoint's own budget ---------------------------------------------------------------
    def _floor_reserve(self, now_s: float) -> tuple[float, float] | None:
        """USD and GPU-hours the min_replicas still spend until ``expected_duration_s`` ends; None
        when the endpoint has no expected end (nothing can be kept back)."""
        expected = getattr(self.endpoint, "expected_duration_s", None)
        if expected is None or self._admitted_s is None:
            return None
        if self.base is None:
            return 0.0, 0.0
        return self._floor_cost(max(0.0, self._admitted_s + expected - now_s))

    def _floor_cost(self, seconds: float) -> tuple[float, float]:
        """USD and GPU-hours the min_replicas (the base lease) spend in ``seconds``."""
        gpus, _ = pricing.allocation_of((self.endpoint.resources,) * self.min_replicas)
        return self._prices.cost_usd(gpus, 0.0, seconds), sum(gpus.values()) * seconds / 3600.0

    def spent(self, now_s: float | None = None) -> tuple[float, float]:
        """USD and GPU-hours the endpoint's leases have held so far."""
        now = time.time() if now_s is None else now_s
        usd = hours = 0.0
        with self._lock:
            for rec in self.records:
                seconds = max(0.0, (rec.released_s or now) - rec.admitted_s)
                usd += self._prices.cost_usd(rec.gpus, 0.0, seconds)
                hours += sum(rec.gpus.values()) * seconds / 3600.0
        return usd, hours

    def _check_floor_fits(self) -> None:
        """An own min_replicas budget smaller than what the min_replicas spend over
        ``expected_duration_s`` can never keep them to their end: refused before anything is
        admitted."""
        budget = getattr(self.endpoint, "budget", None)
        expected = getattr(self.endpoint, "expected_duration_s", None)
        if budget is None or budget.action != "min_replicas" or expected is None or not self.min_replicas:
            return
        usd, hours = self._floor_cost(expected)
        for unit, cap, want in (("usd", budget.usd, usd), ("gpu_hours", budget.gpu_hours, hours)):
            if cap is not None and want > cap + 1e-9:
                raise errors.BudgetExceededError(
                    f"endpoint {self.name!r}: its min_replicas={self.min_replicas} for "
                    f"expected_duration_s={expected:g} need {want:.4g} {unit}, more than its whole "
                    f"Budget({unit}={cap:g}); lower expected_duration_s or min_replicas, or raise "
                    f"Budget({unit}=...)", job=self.name, unit=unit, cap=cap, reservation=want,
                    horizon_s=expected, whole_budget=True)

    def _check_budget(self) -> bool:
        budget = getattr(self.endpoint, "budget", None)
        if budget is None:
            return False
        now = time.time()
        usd, hours = self.spent(now)
        reserve = self._floor_reserve(now) if budget.action == "min_replicas" else (0.0, 0.0)
        keep_usd, keep_hours = reserve if reserve is not None else (0.0, 0.0)
        rows = [(u, s, c, k) for u, s, c, k in (("usd", usd, budget.usd, keep_usd),
                                                 ("gpu_hours", hours, budget.gpu_hours, keep_hours))
                if c is not None]
        over = [r for r in rows if r[1] >= budget.warn_at * r[2] or r[1] >= r[2] - r[3]]
        if not over:
            return False
        unit, spent, cap, keep = max(over, key=lambda o: (o[1] + o[3]) / o[2])
        if not self._budget_warned:       # also when one poll crossed warn_at and the cap at once
            self._budget_warned = True
            events.emit(self.name, "budget_warning", unit=unit, spent=spent, cap=cap,
                        warn_at=budget.warn_at)
        kept = f", {keep:.4g} kept for min_replicas to expected_duration_s" if keep > 0 else ""
        message = (f"endpoint {self.name!r} budget exhausted: spent {spent:.4g} of {cap:g} {unit}"
                   f"{kept}; raise Budget({unit}=...)")
        if budget.action == "min_replicas" and spent < cap and spent >= cap - keep:
            self._to_min("budget", message)     # the extras go; the min_replicas' spend is kept
            return False
        if spent < cap:
            return False
        if budget.action == "min_replicas" and reserve is None:
            # no expected end: nothing was kept back, so the min_replicas serve on past the cap
            self._to_min("budget", message)
            if not self._overrun_flagged:
                self._overrun_flagged = True
                events.emit(self.name, "budget_overrun", unit=unit, spent=spent, cap=cap,
                            message=f"{message}; action min_replicas keeps min_replicas serving "
                                    "past the cap: set Endpoint(expected_duration_s=...) to keep "
                                    "them inside it")
            return False
        return self._base_stopped(protocol.StopRequest("budget", checkpoint=False, message=message))


def _prices() -> pricing.PriceTable:
    try:
        from ainative.scheduling import api

        got = api.prices()
    except Exception:
        got = None
    return got if isinstance(got, pricing.PriceTable) else pricing.PriceTable()
