"""The job model the policy schedules, the guardrails hook, and the stop request a policy hands a
running job, pure Python.

``Job`` is what the policy engine, the simulator and the live scheduler share. ``Guardrails`` is
the injectable hook through which cost guardrails (budgets, idle reclaim, max runtime) take part in
admission; the default ``NoGuardrails`` never objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

Bundle = Mapping[str, float]


@dataclasses.dataclass(slots=True, eq=False)
class Job:
    """One gang job as the policy sees it. Mutable: the engine records its state here."""

    job_id: str
    queue: str
    gpus: float
    """Total GPUs of the gang (fractions below 1 allowed)."""
    gpu_type: str | None = None
    """Accelerator type (upper case), None: any type."""
    priority: int = 0
    preemptible: bool = True
    submit_s: float = 0.0
    duration_s: float | None = None
    """Expected run time (the simulator's true run time); None: unknown."""
    bundles: tuple[Bundle, ...] = ()
    """Ray bundles (live scheduler); empty in the simulator, where ``gpus`` says it all."""
    strategy: str = "PACK"
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    # state kept by the engine
    seq: int = 0
    start_s: float | None = None
    placed_type: str | None = None
    placement: Any = None
    preemptions: int = 0
    last_preempted_s: float | None = None
    reason: str = ""
    first_start_s: float | None = None

    @property
    def running(self) -> bool:
        return self.start_s is not None

    def expected_end(self) -> float | None:
        if self.start_s is None or self.duration_s is None:
            return None
        return self.start_s + self.duration_s


@dataclasses.dataclass(frozen=True, slots=True)
class StopRequest:
    """Admission wants the job to stop: ``reason`` is e.g. "preempted", "budget", "max_runtime",
    "idle", "crash_loop". With ``checkpoint`` the job checkpoints first, within ``grace_s``.
    (Job controllers see it as ``ainative.scheduling.protocol.StopRequest``.)"""

    reason: str
    checkpoint: bool = True
    grace_s: float = 30.0
    message: str = ""


@runtime_checkable
class Guardrails(Protocol):
    """Consulted by the scheduler engine (live and simulated) at admission, on every pass, at the end.

    ``check_admit`` returns None to allow the job, or a reason string that keeps it pending (shown
    by ``status()`` / ``ainative queue why``). ``on_tick`` returns ``(job_id, StopRequest)`` pairs for
    running jobs that must stop (budget spent, idle, max runtime); the engine stops them like a
    preemption, without re-queueing. ``on_finish`` sees every job end with its outcome
    ("succeeded", "failed", "stopped: <reason>", "preempted").

    Optional: ``check_submit(job, now)`` returns a refusal (``message`` and ``details``) when the
    job can never be admitted, e.g. its reservation exceeds a whole budget; the engine raises
    BudgetExceededError from ``submit`` instead of holding the job for ever.
    """

    def check_admit(self, job: Job, now: float) -> str | None: ...

    def on_tick(self, running: Sequence[Job], now: float) -> list[tuple[str, Any]]: ...

    def on_finish(self, job: Job, now: float, outcome: str) -> None: ...


class NoGuardrails:
    """The default: no budgets, nothing stopped."""

    def check_admit(self, job: Job, now: float) -> str | None:
        return None

    def on_tick(self, running: Sequence[Job], now: float) -> list[tuple[str, Any]]:
        return []

    def on_finish(self, job: Job, now: float, outcome: str) -> None:
        return None
