"""Guardrail decisions, pure Python: budget admission, warn/stop at spend thresholds, maximum
runtime, idle reclaim, crash loops and overruns. The live scheduler (through ``ainative.cost``) and
the trace simulator drive the very same ``Guardrails`` object with explicit timestamps::

    admit(job, now) ──refuse──> BudgetExceededError / AdmissionError at submit
        │ admit
    start(job, now) ─> meter(name, now, utilization=, restarts=) ──> (charges, decisions)
        │                        │ charges -> SpendBook (and the SQLite ledger when live)
        │                        └ decisions: warn | flag | stop(reason, checkpoint)
    finish(name, now) ─> last charges

Time never comes from a clock here, so a simulator can replay a month in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ainative import config
from ainative.policy import pricing
from ainative.policy.cost.records import Charge, JobSpec, SpendBook

__all__ = ["Charge", "Decision", "GuardrailConfig", "Guardrails", "JobSpec", "SpendBook"]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What a guardrail wants: ``kind`` is "admit", "refuse", "warn", "flag" or "stop"; ``reason``
    is "budget", "max_runtime", "idle", "crash_loop" or "overrun"."""

    kind: str
    reason: str = ""
    message: str = ""
    checkpoint: bool = True
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        return self.kind in ("refuse", "stop")


ADMIT = Decision(kind="admit")
# Decisions fall due this close to their exact time, and deadlines closer than this are already
# due: the same tolerance on both sides, so a simulator never chases a deadline float rounding
# keeps a hair ahead of "now" (it would otherwise loop in ulp-sized steps).
_TICK_S = 1e-6


def _due(left: float, rate: float, ahead_s: float) -> bool:
    """Is a cap with ``left`` to go reached within ``ahead_s`` (+ one tick) at ``rate`` per second?"""
    return left <= rate * (ahead_s + _TICK_S) + 1e-12


@config.config_dataclass
class GuardrailConfig:
    """Knobs of the runaway guards and of metering."""

    crash_loop_restarts: int = 3
    """K: this many restarts within crash_loop_window_s stop the job instead of burning GPUs."""
    crash_loop_window_s: float = 600.0
    """T: the window, in seconds, for counting restarts."""
    overrun_factor: float = 3.0
    """N: a job running N x past its expected_duration_s is flagged (or stopped, see below)."""
    overrun_action: str = "flag"
    """"flag" (an event, the job keeps running) or "stop"."""
    lookahead_s: float = 0.0
    """Stop this many seconds of spend before a cap is reached: the live poll interval, so that a
    budget is never overrun between two polls. 0 for a simulator that calls at exact deadlines."""
    stop_grace_s: float = 30.0
    """Seconds a stopped job gets to checkpoint."""
    teardown_prior_s: float = 0.0
    """Seconds a stopped job is assumed to hold its resources after its grace ends (actors
    killed, placement group removed, lease released) until a teardown has been seen. A budget
    stop leaves this much of the budget for the teardown. 0 for a simulator, whose stops are
    immediate; the live scheduler sets what a teardown takes on a loaded node."""

    def __post_init__(self) -> None:
        config.require_int("GuardrailConfig", "crash_loop_restarts", self.crash_loop_restarts, minimum=1,
                           maximum=1_000_000)
        config.require_seconds("GuardrailConfig", "crash_loop_window_s", self.crash_loop_window_s)
        config.require_range("GuardrailConfig", "overrun_factor", self.overrun_factor, 1.0, 1e9)
        config.require_in("GuardrailConfig", "overrun_action", self.overrun_action, ("flag", "stop"))
        config.require_seconds("GuardrailConfig", "lookahead_s", self.lookahead_s, allow_zero=True)
        config.require_seconds("GuardrailConfig", "stop_grace_s", self.stop_grace_s, allow_zero=True)
        config.require_seconds("GuardrailConfig", "teardown_prior_s", self.teardown_prior_s,
                               allow_zero=True)


@dataclasses.dataclass(slots=True)
class _Running:
    spec: JobSpec
    started_s: float
    last_meter_s: float
    rate_usd_per_s: float
    gpus_total: float
    idle_since_s: float | None = None
    idle_warned: bool = False
    restarts_seen: int = 0
    restart_times: list[float] = dataclasses.field(default_factory=list)
    overrun_flagged: bool = False


class Guardrails:
    """Per-job and per-queue guardrails over one ``SpendBook``."""

    def __init__(self, prices: pricing.PriceTable | None = None, *,
                 queue_budgets: Mapping[str, pricing.Budget] | None = None,
                 queue_max_runtime_s: Mapping[str, float] | None = None,
                 config: GuardrailConfig | None = None, book: SpendBook | None = None) -> None:
        self.prices = prices or pricing.PriceTable()
        self.queue_budgets = dict(queue_budgets or {})
        self.queue_max_runtime_s = dict(queue_max_runtime_s or {})
        self.config = config or GuardrailConfig()
        self.book = book if book is not None else SpendBook()
        self._running: dict[str, _Running] = {}
        self._rates: dict[str, tuple[float, float]] = {}
        self._floors: dict[str, set[str]] = {}     # scope -> running floors (JobSpec.floor)
        self._warned: set[tuple[str, float]] = set()
        self.stop_latency_s = 0.0
        """Seconds from a budget stop decision to the job's end, as lately seen (``stopped``):
        budget stops are decided this much earlier, so the spend a stopping job still makes
        lands inside the budget. Stays 0 in a simulator, whose stops are immediate."""
        self._latencies: list[float] = []
        self.teardown_s = self.config.teardown_prior_s
        """Seconds a stopped job held its resources after its grace ran out, as lately seen
        (``teardown_prior_s`` until then): a budget stop's grace leaves this much of what the
        budget has left, so the teardown is paid inside the budget too."""
        self._teardowns: list[float] = []

    def stopped(self, latency_s: float, grace_s: float | None = None) -> None:
        """A job stopped for a budget ended ``latency_s`` after the decision (live only); it had
        ``grace_s`` to checkpoint, so what it took beyond that was its teardown."""
        self._latencies = (self._latencies + [max(0.0, float(latency_s))])[-8:]
        self.stop_latency_s = min(max(self._latencies), self.config.stop_grace_s)
        if grace_s is not None and latency_s > grace_s:
            self._teardowns = (self._teardowns + [float(latency_s) - float(grace_s)])[-8:]
            self.teardown_s = min(max(self._teardowns), self.config.stop_grace_s)

    def stop_grace_s(self, left_s: float, minimum_s: float) -> float:
        """The grace a budget stop gets when the budget has ``left_s`` seconds of spend left at
        the current rate: that, less the teardown that follows it, at least ``minimum_s``."""
        return min(self.config.stop_grace_s, max(minimum_s, left_s - self.teardown_s))

    @property
    def ahead_s(self) -> float:
        """How early a budget stop is decided: the poll interval plus the stop latency seen (at
        least the teardown expected, before any stop has been seen)."""
        return self.config.lookahead_s + max(self.stop_latency_s, self.teardown_s)

    # -- admission ---------------------------------------------------------------------------
    def horizon_s(self, job: JobSpec) -> float:
        """Seconds of spend a job reserves: its max runtime, else its expected duration, else 0."""
        limits = [x for x in (job.max_runtime_s, self.queue_max_runtime_s.get(job.queue or "")) if x]
        if limits:
            return float(min(limits))
        return float(job.expected_duration_s or 0.0)

    def _budgets(self, job: JobSpec) -> Iterable[tuple[str, str, pricing.Budget]]:
        if job.budget is not None:
            yield f"job:{job.name}", f"job {job.name!r}", job.budget
        queue_budget = self.queue_budgets.get(job.queue or "")
        if queue_budget is not None:
            yield f"queue:{job.queue}", f"queue {job.queue!r}", queue_budget

    def _left_s(self, run: _Running, budget: pricing.Budget, now_s: float) -> float:
        """Seconds of spend ``run`` still reserves against ``budget``: the rest of its horizon. A
        floor under a min_replicas budget reserves until the period ends or its own horizon does,
        whichever is first (``inf`` when neither ends: a lifetime budget, no horizon)."""
        horizon = self.horizon_s(run.spec)
        if run.spec.floor and budget.action == "min_replicas":
            end = min(budget.period_end(now_s), run.started_s + horizon if horizon > 0 else math.inf)
            return max(0.0, end - now_s)
        return max(0.0, horizon - (now_s - run.started_s))

    def _outstanding(self, scope: str, budget: pricing.Budget, now_s: float,
                     exclude: str) -> tuple[float, float]:
        """USD and GPU-hours still reserved by running jobs in ``scope`` (their unspent horizon)."""
        usd = hours = 0.0
        for name, run in self._running.items():
            if name == exclude or scope not in (f"job:{name}", f"queue:{run.spec.queue}"):
                continue
            left = self._left_s(run, budget, now_s)
            if math.isfinite(left):
                usd += run.rate_usd_per_s * left
                hours += run.gpus_total * left / 3600.0
        return usd, hours

    def _floor_reserve(self, scope: str, budget: pricing.Budget,
                       now_s: float) -> tuple[float, float, float, float]:
        """What a min_replicas budget keeps back for the scope's running floors: USD and GPU-hours
        to their horizon, and the rate (USD/s, GPU-hours/s) at which that reserve is used up.
        Floors with no horizon reserve nothing (they serve on past the cap, flagged)."""
        usd = hours = rate_usd = rate_hours = 0.0
        if budget.action != "min_replicas":
            return usd, hours, rate_usd, rate_hours
        for name in self._floors.get(scope, ()):
            run = self._running[name]
            left = self._left_s(run, budget, now_s)
            if not math.isfinite(left):
                continue
            usd += run.rate_usd_per_s * left
            hours += run.gpus_total * left / 3600.0
            if left > 0:
                rate_usd += run.rate_usd_per_s
                rate_hours += run.gpus_total / 3600.0
        return usd, hours, rate_usd, rate_hours

    def admit(self, job: JobSpec, now_s: float) -> Decision:
        """Admit, or refuse when the job's reserved spend exceeds what a budget has left."""
        rate = self.prices.rate_usd_per_s(job.gpus, job.cpus)
        # at least what it spends before a stop can take effect: a job admitted with less left
        # would be stopped at once and overrun the budget by its start and stop
        horizon = max(self.horizon_s(job), self.ahead_s)
        want_usd, want_hours = rate * horizon, sum(job.gpus.values()) * horizon / 3600.0
        for scope, label, budget in self._budgets(job):
            spent_usd, spent_hours = self.book.spent(scope, budget.period_start(now_s))
            held_usd, held_hours = self._outstanding(scope, budget, now_s, exclude=job.name)
            for unit, cap, spent, held, want in (("usd", budget.usd, spent_usd, held_usd, want_usd),
                                                 ("gpu_hours", budget.gpu_hours, spent_hours,
                                                  held_hours, want_hours)):
                if cap is None:
                    continue
                left = cap - spent - held
                if left <= 1e-9 or want > left + 1e-9:
                    return _refusal(job, label, budget, unit, cap, spent, held, want, horizon)
        return ADMIT

    def never_admits(self, job: JobSpec, now_s: float) -> Decision | None:
        """A refusal when the job's reservation alone exceeds a whole budget (its own or its
        queue's): no wait can ever admit it, so the caller raises at once. None otherwise."""
        horizon = self.horizon_s(job)
        want_usd = self.prices.rate_usd_per_s(job.gpus, job.cpus) * horizon
        want_hours = sum(job.gpus.values()) * horizon / 3600.0
        for _scope, label, budget in self._budgets(job):
            for unit, cap, want in (("usd", budget.usd, want_usd), ("gpu_hours", budget.gpu_hours, want_hours)):
                if cap is not None and want > cap + 1e-9:
                    return _whole_budget_refusal(job, label, budget, unit, cap, want, horizon)
        return None

    # -- running -----------------------------------------------------------------------------
    def start(self, job: JobSpec, now_s: float, *, last_meter_s: float | None = None) -> None:
        """Begin metering ``job`` (admitted, its gang placed). A restarted meter passes the job's
        original start and ``last_meter_s`` from the ledger: the next charge covers the gap."""
        if job.name in self._running:
            self._rate(self._running[job.name], -1.0)
        run = self._running[job.name] = _Running(
            spec=job, started_s=now_s, gpus_total=sum(job.gpus.values()),
            last_meter_s=now_s if last_meter_s is None else last_meter_s,
            rate_usd_per_s=self.prices.rate_usd_per_s(job.gpus, job.cpus))
        self._rate(run, 1.0)

    def _rate(self, run: _Running, sign: float) -> None:
        """Keep each scope's spend rate current, so budget checks need no scan of running jobs."""
        for scope in (f"job:{run.spec.name}", f"queue:{run.spec.queue}"):
            usd, hours = self._rates.get(scope, (0.0, 0.0))
            self._rates[scope] = (usd + sign * run.rate_usd_per_s, hours + sign * run.gpus_total / 3600.0)
            if run.spec.floor:
                floors = self._floors.setdefault(scope, set())
                (floors.add if sign > 0 else floors.discard)(run.spec.name)

    def running(self) -> list[str]:
        return list(self._running)

    def meter(self, name: str, now_s: float, *, utilization: float | None = None,
              restarts: int | None = None) -> tuple[list[Charge], list[Decision]]:
        """Charge the time since the last call and decide: warnings, flags and at most one stop."""
        run = self._running[name]
        charges = self._charge(run, now_s)
        decisions = self._budget_decisions(run, now_s)
        decisions += self._runtime_decisions(run, now_s)
        decisions += self._idle_decisions(run, now_s, utilization)
        decisions += self._crash_decisions(run, now_s, restarts)
        stops = [d for d in decisions if d.kind == "stop"]
        return charges, [d for d in decisions if d.kind != "stop"] + stops[:1]

    def charge(self, name: str, now_s: float) -> list[Charge]:
        """Charge ``name``'s time up to ``now_s`` without deciding anything. A caller metering
        several jobs at one instant charges them all first, so that every job's decision sees the
        scope's whole spend (not only that of the jobs metered before it)."""
        return self._charge(self._running[name], now_s)

    def finish(self, name: str, now_s: float) -> list[Charge]:
        """The job ended (any outcome): charge its last interval and stop metering it."""
        run = self._running.pop(name, None)
        if run is None:
            return []
        self._rate(run, -1.0)
        return self._charge(run, now_s)

    def _charge(self, run: _Running, now_s: float) -> list[Charge]:
        start, run.last_meter_s = run.last_meter_s, max(run.last_meter_s, now_s)
        charges = self.prices_charges(run.spec, start, run.last_meter_s)
        for charge in charges:
            self.book.add(charge)
        return charges

    def prices_charges(self, job: JobSpec, start_s: float, end_s: float) -> list[Charge]:
        """One charge per accelerator type (and one for CPU cores) for ``[start_s, end_s)``."""
        seconds = end_s - start_s
        if seconds <= 0:
            return []
        out = [Charge(job=job.name, queue=job.queue, team=job.team, accelerator=kind,
                      start_s=start_s, end_s=end_s, gpu_seconds=count * seconds,
                      cost_usd=self.prices.gpu_hour_price(kind) * count * seconds / 3600.0)
               for kind, count in sorted(job.gpus.items()) if count > 0]
        if job.cpus > 0:
            out.append(Charge(job=job.name, queue=job.queue, team=job.team, accelerator="CPU",
                              start_s=start_s, end_s=end_s, gpu_seconds=0.0,
                              cost_usd=self.prices.cpu_core_hour_usd * job.cpus * seconds / 3600.0))
        return out

    def _scope_rate(self, scope: str) -> tuple[float, float]:
        usd, hours = self._rates.get(scope, (0.0, 0.0))
        return max(0.0, usd), max(0.0, hours)

    def _budget_limits(self, run: _Running, scope: str, budget: pricing.Budget,
                       now_s: float) -> Iterable[tuple[str, float, float, float, float]]:
        """Per unit with a cap: (unit, cap, spent, left before ``run`` must stop, the rate that
        uses ``left`` up). Under a min_replicas budget the scope's other jobs stop early enough to
        leave its floors their reserve (which the floors use up themselves); a floor stops at the
        cap itself."""
        spent_usd, spent_hours = self.book.spent(scope, budget.period_start(now_s))
        rate_usd, rate_hours = self._scope_rate(scope)
        keep_usd = keep_hours = floor_usd = floor_hours = 0.0
        if budget.action == "min_replicas" and not run.spec.floor:
            keep_usd, keep_hours, floor_usd, floor_hours = self._floor_reserve(scope, budget, now_s)
        for unit, cap, spent, rate, keep, floor_rate in (
                ("usd", budget.usd, spent_usd, rate_usd, keep_usd, floor_usd),
                ("gpu_hours", budget.gpu_hours, spent_hours, rate_hours, keep_hours, floor_hours)):
            if cap is not None:
                yield unit, cap, spent, cap - spent - keep, max(0.0, rate - floor_rate)

    def _ends_inside(self, run: _Running, budget: pricing.Budget, left: float, rate: float,
                     now_s: float) -> bool:
        """A floor under a min_replicas budget whose spend to its end fits in what is left ends
        by itself inside the budget: no stop (the rest of the scope was stopped to make room)."""
        if not (run.spec.floor and budget.action == "min_replicas"):
            return False
        return left >= rate * self._left_s(run, budget, now_s) - 1e-9

    def _budget_decisions(self, run: _Running, now_s: float) -> list[Decision]:
        out: list[Decision] = []
        for scope, label, budget in self._budgets(run.spec):
            period = budget.period_start(now_s)
            rate_usd, rate_hours = self._scope_rate(scope)
            ahead = self.ahead_s
            for unit, cap, spent, left, rate in self._budget_limits(run, scope, budget, now_s):
                facts = {"scope": scope, "unit": unit, "cap": cap, "spent": spent,
                         "action": budget.action,
                         # seconds of spend left at the scope's rate: the most a stop may take
                         "left_s": max(0.0, left) / rate if rate > 0 else 0.0}
                if left < cap - spent:
                    facts["reserved_for_min_replicas"] = cap - spent - left
                scope_rate = rate_usd if unit == "usd" else rate_hours
                if run.spec.floor and budget.action == "min_replicas" \
                        and math.isinf(self._left_s(run, budget, now_s)):
                    # a floor with no horizon under a lifetime budget: nothing could be kept back
                    # for it, so it serves on past the cap, as the action asks; said once
                    if _due(left, scope_rate, ahead) and (scope + unit + ":floor", period) not in self._warned:
                        self._warned.add((scope + unit + ":floor", period))
                        out.append(Decision(
                            kind="flag", reason="budget", details=facts,
                            message=f"budget of {label} exhausted: spent {_fmt(unit, spent)} of "
                                    f"{_fmt(unit, cap)}; action min_replicas keeps {run.spec.name!r} "
                                    "serving past the cap. Give the endpoint expected_duration_s (or "
                                    "the budget a period) to keep its min_replicas inside the budget, "
                                    f"or raise Budget({unit}=...)"))
                    continue
                if _due(left, rate, ahead) and not self._ends_inside(run, budget, left, rate, now_s):
                    kept = cap - spent - left
                    out.append(Decision(
                        kind="stop", reason="budget", checkpoint=True, details=facts,
                        message=f"budget of {label} exhausted: spent {_fmt(unit, spent)} of "
                                f"{_fmt(unit, cap)}"
                                + (f", {_fmt(unit, kept)} kept for endpoints' min_replicas to the end "
                                   "of their horizon (action min_replicas)" if kept > 0 else "")
                                + f"; raise Budget({unit}=...) and re-run to resume from the last "
                                "checkpoint"))
                elif _due(budget.warn_at * cap - spent, scope_rate, 0.0) \
                        and (scope + unit, period) not in self._warned:
                    self._warned.add((scope + unit, period))
                    out.append(Decision(
                        kind="warn", reason="budget", details=facts,
                        message=f"budget of {label} at {spent / cap:.0%}: spent {_fmt(unit, spent)} "
                                f"of {_fmt(unit, cap)} (warn_at={budget.warn_at})"))
        return out

    def _runtime_decisions(self, run: _Running, now_s: float) -> list[Decision]:
        elapsed = now_s - run.started_s
        out: list[Decision] = []
        limits = [x for x in (run.spec.max_runtime_s, self.queue_max_runtime_s.get(run.spec.queue or ""))
                  if x]
        if limits and elapsed >= min(limits) - _TICK_S:
            out.append(Decision(kind="stop", reason="max_runtime", checkpoint=True,
                                details={"elapsed_s": elapsed, "max_runtime_s": min(limits)},
                                message=f"job {run.spec.name!r} ran {elapsed:.0f} s, max_runtime_s="
                                        f"{min(limits):g}; raise max_runtime_s to run longer"))
        expected = run.spec.expected_duration_s
        if expected and elapsed >= self.config.overrun_factor * expected - _TICK_S \
                and not run.overrun_flagged:
            run.overrun_flagged = True
            stop = self.config.overrun_action == "stop"
            out.append(Decision(kind="stop" if stop else "flag", reason="overrun", checkpoint=True,
                                details={"elapsed_s": elapsed, "expected_duration_s": expected},
                                message=f"job {run.spec.name!r} ran {elapsed:.0f} s, "
                                        f"{elapsed / expected:.1f} x its expected_duration_s="
                                        f"{expected:g} (overrun_factor={self.config.overrun_factor})"))
        return out

    def _idle_decisions(self, run: _Running, now_s: float, utilization: float | None) -> list[Decision]:
        policy = run.spec.idle
        if policy is None or utilization is None:
            return []
        if utilization >= policy.threshold:
            run.idle_since_s, run.idle_warned = None, False
            return []
        if run.idle_since_s is None:
            run.idle_since_s = now_s
        idle_for = now_s - run.idle_since_s
        facts = {"idle_s": idle_for, "utilization": utilization, "threshold": policy.threshold}
        if idle_for >= policy.window_s - _TICK_S and policy.action == "stop":
            return [Decision(kind="stop", reason="idle", checkpoint=True, details=facts,
                             message=f"job {run.spec.name!r} idle (utilisation {utilization:.0%} < "
                                     f"{policy.threshold:.0%}) for {idle_for:.0f} s >= window_s="
                                     f"{policy.window_s:g}: checkpoint and release")]
        if idle_for >= policy.warn_s - _TICK_S and not run.idle_warned:
            run.idle_warned = True
            return [Decision(kind="warn", reason="idle", details=facts,
                             message=f"job {run.spec.name!r} idle for {idle_for:.0f} s; released at "
                                     f"window_s={policy.window_s:g}")]
        return []

    def _crash_decisions(self, run: _Running, now_s: float, restarts: int | None) -> list[Decision]:
        if restarts is None or restarts <= run.restarts_seen:
            return []
        run.restart_times += [now_s] * (restarts - run.restarts_seen)
        run.restarts_seen = restarts
        window = self.config.crash_loop_window_s
        recent = [t for t in run.restart_times if t > now_s - window]
        run.restart_times = recent
        if len(recent) < self.config.crash_loop_restarts:
            return []
        return [Decision(kind="stop", reason="crash_loop", checkpoint=False,
                         details={"restarts": len(recent), "window_s": window},
                         message=f"job {run.spec.name!r} restarted {len(recent)} times within "
                                 f"{window:g} s (crash_loop_restarts={self.config.crash_loop_restarts})"
                                 ": stopped instead of burning GPUs; fix the crash and re-run")]

    def next_deadline_s(self, name: str, now_s: float) -> float | None:
        """The earliest time a decision about ``name`` can change with usage as it is now (a cap
        reached, max runtime, the idle window, an overrun); lets a simulator jump straight there."""
        run = self._running[name]
        times: list[float] = []
        limits = [x for x in (run.spec.max_runtime_s, self.queue_max_runtime_s.get(run.spec.queue or ""))
                  if x]
        if limits:
            times.append(run.started_s + min(limits))
        if run.spec.expected_duration_s and not run.overrun_flagged:
            times.append(run.started_s + self.config.overrun_factor * run.spec.expected_duration_s)
        if run.spec.idle is not None and run.idle_since_s is not None:
            times.append(run.idle_since_s + run.spec.idle.window_s)
        for scope, _label, budget in self._budgets(run.spec):
            period = budget.period_start(now_s)
            rate_usd, rate_hours = self._scope_rate(scope)
            for unit, cap, spent, left, rate in self._budget_limits(run, scope, budget, now_s):
                if rate > 0:
                    times.append(now_s + max(0.0, left / rate - self.ahead_s))
                scope_rate = rate_usd if unit == "usd" else rate_hours
                if scope_rate > 0 and (scope + unit, period) not in self._warned:
                    times.append(now_s + max(0.0, (budget.warn_at * cap - spent) / scope_rate))
        future = [t for t in times if t > now_s + _TICK_S]
        return min(future) if future else None


def _fmt(unit: str, value: float) -> str:
    return f"${value:,.2f}" if unit == "usd" else f"{value:,.2f} GPU-hours"


def _basis(job: JobSpec, horizon: float) -> str:
    return (f"max_runtime_s={horizon:g}" if job.max_runtime_s else
            f"expected_duration_s={horizon:g}" if job.expected_duration_s else
            f"{horizon:g} s, the least a stop takes to land" if horizon else "no runtime limit")


def _whole_budget_refusal(job: JobSpec, label: str, budget: pricing.Budget, unit: str, cap: float,
                          want: float, horizon: float) -> Decision:
    gpus = ", ".join(f"{n:g} x {k}" for k, n in sorted(job.gpus.items())) or f"{job.cpus:g} CPUs"
    period = f" per {budget.period}" if budget.period else ""
    return Decision(
        kind="refuse", reason="budget", checkpoint=False,
        details={"scope": label, "unit": unit, "cap": cap, "reservation": want, "horizon_s": horizon,
                 "whole_budget": True},
        message=f"job {job.name!r} reserves {_fmt(unit, want)} ({gpus} for {_basis(job, horizon)}), "
                f"more than the whole budget of {label}: {_fmt(unit, cap)}{period}; it can never be "
                f"admitted. Lower max_runtime_s (or the job's size) or raise Budget({unit}=...)")


def _refusal(job: JobSpec, label: str, budget: pricing.Budget, unit: str, cap: float, spent: float,
             held: float, want: float, horizon: float) -> Decision:
    left = max(0.0, cap - spent - held)
    basis = _basis(job, horizon)
    gpus = ", ".join(f"{n:g} x {k}" for k, n in sorted(job.gpus.items())) or f"{job.cpus:g} CPUs"
    period = f" this {budget.period}" if budget.period else ""
    return Decision(
        kind="refuse", reason="budget", checkpoint=False,
        details={"scope": label, "unit": unit, "cap": cap, "spent": spent, "reserved_by_others": held,
                 "remaining": left, "reservation": want, "horizon_s": horizon},
        message=f"budget of {label}{period}: {_fmt(unit, left)} left of {_fmt(unit, cap)} "
                f"(spent {_fmt(unit, spent)}, reserved by running jobs {_fmt(unit, held)}); job "
                f"{job.name!r} reserves {_fmt(unit, want)} ({gpus} for {basis}). Lower "
                f"max_runtime_s or raise Budget({unit}=...)")
