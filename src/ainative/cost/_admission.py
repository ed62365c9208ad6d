"""Per-job guardrails for any job controller: an ``Admission`` that wraps another one.

::

    admit(JobRequest) ─> meter.admit(spec) ─refuse─> BudgetExceededError (nothing reserved)
                         │ admit
                         └> inner.admit(request) ─> meter.start(spec) ─> GuardedLease
    GuardedLease.poll(Usage) ─> inner.poll (preemption first) ─> meter.poll(utilisation, restarts)
                                └> StopRequest(reason="budget"|"max_runtime"|"idle"|"crash_loop"|...)
    GuardedLease.release(outcome) ─> meter.finish ─> inner.release
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

from ainative import errors
from ainative.policy.cost import guardrails as g
from ainative.policy.cost import hook
from ainative.policy import pricing
from ainative.scheduling import protocol

log = logging.getLogger("ainative.cost")


class MeterLike(Protocol):
    def admit(self, spec: g.JobSpec) -> g.Decision: ...

    def start(self, spec: g.JobSpec) -> None: ...

    def poll(self, job: str, *, utilization: float | None = None,
             restarts: int | None = None) -> list[g.Decision]: ...

    def finish(self, job: str, outcome: str) -> None: ...


def spec_from_request(request: protocol.JobRequest) -> g.JobSpec:
    """The guardrails' view of a job request. ``metadata`` may carry ``idle`` (an IdlePolicy) and
    ``team`` (who pays, default: the queue)."""
    gpus, cpus = pricing.allocation_of(request.bundles)
    idle = request.metadata.get("idle")
    if idle is not None and not isinstance(idle, pricing.IdlePolicy):
        raise errors.ConfigError(f"idle must be an ainative.IdlePolicy, got {idle!r}", field="idle",
                                 value=idle)
    if request.budget is not None and not isinstance(request.budget, pricing.Budget):
        raise errors.ConfigError(f"budget must be an ainative.Budget, got {request.budget!r}",
                                 field="budget", value=request.budget)
    return g.JobSpec(name=request.name, queue=request.queue, gpus=gpus, cpus=cpus,
                     max_runtime_s=request.max_runtime_s,
                     expected_duration_s=request.expected_duration_s, budget=request.budget,
                     idle=idle, team=request.metadata.get("team"),
                     floor=request.kind == "endpoint" and not request.preemptible)


class GuardedAdmission:
    def __init__(self, meter: MeterLike, inner: protocol.Admission, *, probe: Any = None,
                 grace_s: float = 30.0, idle: pricing.IdlePolicy | None = None) -> None:
        self.meter, self.inner, self.probe, self.grace_s = meter, inner, probe, grace_s
        self.idle = idle

    def admit(self, request: protocol.JobRequest, timeout_s: float | None = None) -> GuardedLease:
        spec = spec_from_request(request)
        if spec.idle is None and self.idle is not None:
            spec = dataclasses.replace(spec, idle=self.idle)
        decision = self.meter.admit(spec)
        if decision.kind == "refuse":
            raise errors.BudgetExceededError(decision.message, job=request.name, **decision.details)
        inner = self.inner.admit(request, timeout_s)
        try:
            self.meter.start(spec)
        except BaseException:
            inner.release("failed")
            raise
        return GuardedLease(self, request.name, inner)


class GuardedLease:
    """A lease that meters the job and turns guardrail stops into ``StopRequest``s."""

    def __init__(self, owner: GuardedAdmission, name: str, inner: protocol.Lease) -> None:
        self.owner, self.name, self.inner = owner, name, inner
        self.decisions: list[g.Decision] = []
        self._released = False

    @property
    def admitted_s(self) -> float | None:
        """The inner lease's admission time on the admitting side's clock, where the ledger's
        charge begins (``protocol.held_since``); None when the inner lease does not say."""
        return getattr(self.inner, "admitted_s", None)

    @property
    def released_s(self) -> float | None:
        """When the inner lease's release took effect there (``protocol.held_until``)."""
        return getattr(self.inner, "released_s", None)

    def poll(self, usage: protocol.Usage | None = None) -> protocol.StopRequest | None:
        stop = self.inner.poll(usage)
        utilization = usage.accelerator_utilization if usage is not None else None
        if utilization is None and self.owner.probe is not None:
            utilization = self.owner.probe()
        decisions = self.owner.meter.poll(self.name, utilization=utilization,
                                          restarts=usage.restarts if usage is not None else None)
        self.decisions += decisions
        if stop is not None:
            return stop
        for d in decisions:
            if d.kind != "stop":
                continue
            grace = self.owner.grace_s
            if d.reason == "budget":
                # (an endpoint's min_replicas lease under a min_replicas budget is stopped only at
                # the cap itself: Guardrails decides that, JobSpec.floor)
                # land the stop before the cap: the checkpoint gets what the budget has left
                grace = min(grace, max(hook.MIN_STOP_S, float(d.details.get("left_s", grace))))
            return protocol.StopRequest(reason=d.reason, checkpoint=d.checkpoint, grace_s=grace,
                                        message=d.message)
        return None

    def release(self, outcome: str) -> None:
        if self._released:
            return
        self._released = True
        try:
            self.owner.meter.finish(self.name, outcome)
        finally:
            self.inner.release(outcome)
