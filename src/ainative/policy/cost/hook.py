"""The scheduler's guardrails hook (``policy.admission.Guardrails``) implemented with the pure
``Guardrails`` policies, so the live scheduler and the simulator apply the same cost guardrails.

::

    Engine pass ─ check_admit(job, now) ─> Guardrails.admit ─ refuse ─> job held, reason = message
               ├ on_tick(running, now) ─> start metering new jobs at job.start_s
               │                          Guardrails.meter(now, utilisation, restarts)
               │                          ─> charges (book + on_charge sink) and stops
               └ on_finish(job, now, outcome) ─> last charges
    next_wakeup(running, now) ─> earliest cap / max runtime / idle / overrun / usage change time,
                                 so a discrete-event simulator stops jobs exactly on time

What the hook reads from ``Job.metadata`` (all optional): ``budget`` (Budget), ``idle``
(IdlePolicy), ``max_runtime_s``, ``expected_duration_s``, ``team``, ``cpus``; and usage:
``utilization`` (a float, or ``((offset_s, value), ...)`` steps from the job's start, as a trace
gives), ``restarts`` (an int the live scheduler updates from lease polls) or ``restart_offsets_s``
(a trace's restart times from the job's start).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ainative import errors
from ainative.policy.cost import guardrails as g
from ainative.policy import pricing
from ainative.policy.admission import Job, StopRequest

Sink = Callable[[list[g.Charge]], None]
MIN_STOP_S = 1.0
"""The least grace a budget stop gives (a lease is polled about once a second)."""


class GuardrailsHook:
    """``Engine(..., guardrails=GuardrailsHook.from_queues(queues, prices))``."""

    def __init__(self, rails: g.Guardrails, *, on_charge: Sink | None = None) -> None:
        self.rails = rails
        self.on_charge = on_charge
        self.events: list[tuple[float, str, g.Decision]] = []
        self.refusals: dict[str, str] = {}
        self._budget_stops: dict[str, tuple[float, float]] = {}  # job -> (decided at, its grace)

    @classmethod
    def from_queues(cls, queues: Sequence[Any], prices: pricing.PriceTable | None = None, *,
                    queue_budgets: Mapping[str, pricing.Budget] | None = None,
                    queue_max_runtime_s: Mapping[str, float] | None = None,
                    config: g.GuardrailConfig | None = None, book: g.SpendBook | None = None,
                    on_charge: Sink | None = None) -> GuardrailsHook:
        """Budgets from each ``Queue(budget=...)`` plus ``queue_budgets``; a budget or TTL for a
        queue that does not exist is an UnknownQueueError."""
        names = [q.name for q in queues]
        budgets = {q.name: q.budget for q in queues if getattr(q, "budget", None) is not None}
        budgets.update(queue_budgets or {})
        for where, keys in (("queue_budgets", budgets), ("queue_max_runtime_s", queue_max_runtime_s or {})):
            for name in keys:
                if name not in names:
                    raise errors.UnknownQueueError(
                        f"{where} names queue {name!r}, which is not configured; queues: "
                        f"{', '.join(sorted(names))}", field=where, value=name)
        for name, budget in budgets.items():
            if not isinstance(budget, pricing.Budget):
                raise errors.ConfigError(f"budget of queue {name!r} must be an ainative.Budget, got "
                                         f"{budget!r}", field="budget", value=budget)
        rails = g.Guardrails(prices, queue_budgets=budgets, queue_max_runtime_s=queue_max_runtime_s,
                             config=config, book=book)
        return cls(rails, on_charge=on_charge)

    # -- the Guardrails protocol ------------------------------------------------------------
    def check_submit(self, job: Job, now: float) -> g.Decision | None:
        """A refusal when ``job`` can never be admitted (its reservation exceeds a whole budget)."""
        decision = self.rails.never_admits(spec_of(job), now)
        if decision is not None:
            self.events.append((now, job.job_id, decision))
        return decision

    def check_admit(self, job: Job, now: float) -> str | None:
        decision = self.rails.admit(spec_of(job), now)
        if decision.kind != "refuse":
            self.refusals.pop(job.job_id, None)
            return None
        if job.job_id not in self.refusals:
            self.events.append((now, job.job_id, decision))
        self.refusals[job.job_id] = decision.message
        return decision.message

    def on_tick(self, running: Sequence[Job], now: float) -> list[tuple[str, Any]]:
        stops: list[tuple[str, Any]] = []
        self._sync(running)
        for job in running:           # everything charged first: each decision sees all spend
            self._emit(self.rails.charge(job.job_id, now))
        for job in running:
            charges, decisions = self.rails.meter(job.job_id, now, utilization=_utilization(job, now),
                                                  restarts=_restarts(job, now))
            self._emit(charges)
            for d in decisions:
                # Budget(action="min_replicas") is the rails' own: an endpoint's guaranteed
                # replicas (JobSpec.floor) get a stop only at the cap itself, the rest earlier
                self.events.append((now, job.job_id, d))
                if d.kind == "stop":
                    stops.append((job.job_id, self._stop_request(job, d, now)))
        return stops

    def _stop_request(self, job: Job, d: g.Decision, now: float) -> StopRequest:
        grace = self.rails.config.stop_grace_s
        if d.reason == "budget":
            # the stop must land before the cap (plus one metering period): the checkpoint gets
            # what is left of the budget at the current rate, at least a second to take the stop
            grace = self.rails.stop_grace_s(float(d.details.get("left_s", grace)), MIN_STOP_S)
            self._budget_stops.setdefault(job.job_id, (now, grace))
        return StopRequest(reason=d.reason, checkpoint=d.checkpoint, grace_s=grace, message=d.message)

    def on_finish(self, job: Job, now: float, outcome: str) -> None:
        self._emit(self.rails.finish(job.job_id, now))
        stopped = self._budget_stops.pop(job.job_id, None)
        if stopped is not None:
            stopped_at, grace = stopped
            self.rails.stopped(now - stopped_at, grace)

    # -- extras ------------------------------------------------------------------------------
    def next_wakeup(self, running: Sequence[Job], now: float) -> float | None:
        """When the next guardrail decision can fall due (None: none pending)."""
        self._sync(running)
        times = [t for job in running for t in (self.rails.next_deadline_s(job.job_id, now),
                                                 _next_usage_change(job, now)) if t is not None]
        return min(times) if times else None

    def _sync(self, running: Sequence[Job]) -> None:
        known = set(self.rails.running())
        for job in running:
            if job.job_id not in known:
                assert job.start_s is not None
                self.rails.start(spec_of(job), job.start_s, last_meter_s=self._resume_point(job))

    def _resume_point(self, job: Job) -> float | None:
        """Where metering of a running job we have not seen resumes (None: at its start); a hook
        backed by a ledger answers with the end of the job's last charge."""
        return None

    def _emit(self, charges: list[g.Charge]) -> None:
        if charges and self.on_charge is not None:
            self.on_charge(charges)


def spec_of(job: Job) -> g.JobSpec:
    """The guardrails' view of a scheduler job (typed by where it was placed, else as asked)."""
    meta = job.metadata
    kind = job.placed_type or job.gpu_type or "GPU"
    return g.JobSpec(name=job.job_id, queue=job.queue, gpus={kind: job.gpus} if job.gpus else {},
                     cpus=float(meta.get("cpus", 0.0)), max_runtime_s=meta.get("max_runtime_s"),
                     expected_duration_s=meta.get("expected_duration_s"), budget=meta.get("budget"),
                     idle=meta.get("idle"), team=meta.get("team"),
                     # an endpoint's min_replicas lease: the last a min_replicas budget stops
                     floor=meta.get("kind") == "endpoint" and not job.preemptible)


def _offset(job: Job, now: float) -> float:
    return now - (job.start_s if job.start_s is not None else now)


def _utilization(job: Job, now: float) -> float | None:
    value = job.metadata.get("utilization")
    if value is None or isinstance(value, (int, float)):
        return value
    steps: Sequence[tuple[float, float]] = value
    index = bisect.bisect_right([s[0] for s in steps], _offset(job, now)) - 1
    return steps[index][1] if index >= 0 else None


def _restarts(job: Job, now: float) -> int | None:
    offsets = job.metadata.get("restart_offsets_s")
    if offsets is None:
        return job.metadata.get("restarts")
    return bisect.bisect_right(offsets, _offset(job, now))


def _next_usage_change(job: Job, now: float) -> float | None:
    if job.start_s is None:
        return None
    util = job.metadata.get("utilization")
    changes = [step[0] for step in util] if util is not None and not isinstance(util, (int, float)) \
        else []
    changes += list(job.metadata.get("restart_offsets_s") or ())
    future = [job.start_s + c for c in changes if job.start_s + c > now]
    return min(future) if future else None
