"""The contract between job controllers (TrainJob, Endpoint) and admission (queues, quotas,
budgets, guardrails).

A controller asks for admission *before* it reserves a gang, keeps the lease while it runs, polls
it for a stop request (preemption, budget, max runtime, idle reclaim, crash loop) at least once per
second, and releases it with an outcome when it ends::

    admission = protocol.admission_for(queue)          # no scheduler configured -> ImmediateAdmission
    lease = admission.admit(protocol.JobRequest(...), timeout_s=None)   # blocks until admitted
    try:
        ...reserve the gang, run...
        stop = lease.poll(protocol.Usage(...))         # -> StopRequest | None
        if stop: checkpoint if stop.checkpoint, within stop.grace_s; end as f"stopped: {stop.reason}"
    finally:
        lease.release(outcome)                         # "succeeded" | "failed" | "stopped: <reason>"

The scheduling package replaces ``admission_for`` with a scheduler-backed implementation once
``ainative.scheduling.configure(...)`` has been called; without it every job is admitted at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ainative import resources as res


@dataclasses.dataclass(frozen=True, slots=True)
class JobRequest:
    """What a job asks admission for."""

    name: str
    kind: str                                   # "train" | "endpoint" | "gang"
    bundles: tuple[res.Resources, ...]
    strategy: str = "PACK"
    queue: str | None = None
    priority: int = 0
    preemptible: bool = True
    max_runtime_s: float | None = None
    expected_duration_s: float | None = None
    budget: Any = None                          # ainative Budget for this job, or None
    min_bundles: int | None = None              # elastic jobs: can start with this many
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class StopRequest:
    """Admission wants the job to stop: ``reason`` is e.g. "preempted", "budget", "max_runtime",
    "idle", "crash_loop". With ``checkpoint`` the job checkpoints first, within ``grace_s``."""

    reason: str
    checkpoint: bool = True
    grace_s: float = 30.0
    message: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """What a running job reports at each poll."""

    bundles_in_use: int
    restarts: int = 0
    step: int | None = None
    accelerator_utilization: float | None = None   # 0-1, from the utilisation probe, if any


class Lease(Protocol):
    def poll(self, usage: Usage | None = None) -> StopRequest | None: ...

    def release(self, outcome: str) -> None: ...


class Admission(Protocol):
    def admit(self, request: JobRequest, timeout_s: float | None = None) -> Lease: ...


class _ImmediateLease:
    def poll(self, usage: Usage | None = None) -> StopRequest | None:
        return None

    def release(self, outcome: str) -> None:
        return None


class ImmediateAdmission:
    """No scheduler configured: admit every job at once, never ask it to stop."""

    def admit(self, request: JobRequest, timeout_s: float | None = None) -> Lease:
        return _ImmediateLease()


_FACTORY: Callable[[str | None], Admission] | None = None


def set_admission_factory(factory: Callable[[str | None], Admission] | None) -> None:
    """Installed by ``ainative.scheduling.configure``; None restores immediate admission."""
    global _FACTORY
    _FACTORY = factory


def admission_for(queue: str | None) -> Admission:
    """The admission for a job on ``queue`` (None: the default queue)."""
    return _FACTORY(queue) if _FACTORY is not None else ImmediateAdmission()
