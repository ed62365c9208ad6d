"""The knobs of the scheduling policy and what one pass returns, pure Python."""

from __future__ import annotations

import dataclasses
from typing import Any

from ainative import errors
from ainative import config
from ainative.config import require_in
from ainative.policy.admission import Job

POLICIES = ("ainative", "fifo", "kueue")
PLACEMENTS = ("packed", "best-fit", "worst-fit", "fgd")     # policy.fragmentation.PLACEMENTS


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class PolicyConfig:
    """Knobs of the scheduling policy (the defaults suit hour-scale training jobs); public as
    ``ai.PolicyConfig``, passed to ``ai.scheduling.configure(queues, policy=...)``, to the simulator,
    or given in a spec as ``kind: SchedulerPolicy``."""

    policy: str = "ainative"
    """"ainative" (fair share + placement + backfill + preemption), "fifo" or "kueue" baselines."""
    half_life_s: float = 3600.0
    """Half-life of past usage in the fair share."""
    min_runtime_s: float = 3600.0
    """Protection window: a job that started less than this ago is never preempted (1 h: on the
    benchmark trace 5 min cost 2x the preemptions and lower utilisation for no better JCT)."""
    ping_pong_s: float = 1800.0
    """A preempted job is not preempted again within this window after it was."""
    max_preemptions: int = 3
    """A job is preempted at most this many times over its life."""
    aging_s: float = 1800.0
    """Waiting this long raises a job's priority within its queue by one level."""
    starve_s: float = 4 * 3600.0
    """A job waiting this long is tried before every other, in age order, whatever its queue's
    share; a blocked gang among them holds its backfill reservation until it starts."""
    gang_hold_s: float = 60.0
    """A blocked multi-GPU gang that has waited this long keeps its backfill reservation from one
    pass to the next until it starts (a starving job keeps it after ``starve_s`` whatever its
    size). Otherwise reservations are re-dealt every pass in fair-share order, and the 1-GPU jobs
    of lighter queues, tried first, took the nodes a heavier queue's gang was draining: on the
    production-shaped trace one 8-GPU gang was pushed back four times (3.10x the teams' mean
    maximum wait). 0 keeps every gang's reservation from its first pass."""
    restart_overhead_s: float = 30.0
    """Extra run time a preempted job needs to resume from its checkpoint (simulator)."""
    preempt_retry_s: float = 60.0
    """After a failed preemption search for a queue and type, wait this long before the next."""
    scan_per_queue: int = 32
    """Candidates per queue looked at in one pass (caps decision time with many pending)."""
    scan_total: int = 256
    """Candidates looked at in one pass over all queues."""
    release_on_preempt: bool = True
    """Simulator: a victim's GPUs are free at once. The live scheduler always sets False (a victim's
    GPUs are freed when its lease is released), whatever is given here."""
    placement: str = "packed"
    """Where a gang goes among the nodes that fit it: "packed" (fewest whole free GPUs left),
    "best-fit", "worst-fit" or "fgd" (least added fragmentation against the workload's request
    mix); see ``policy.fragmentation``. Used by the simulator's and the live scheduler's placers."""

    def __post_init__(self) -> None:
        require_in("PolicyConfig", "policy", self.policy, POLICIES)
        require_in("PolicyConfig", "placement", self.placement, PLACEMENTS)
        for f in ("half_life_s", "aging_s", "starve_s"):
            config.require_seconds("PolicyConfig", f, getattr(self, f))
        for f in ("min_runtime_s", "ping_pong_s", "restart_overhead_s", "preempt_retry_s", "gang_hold_s"):
            config.require_seconds("PolicyConfig", f, getattr(self, f), allow_zero=True)
        # a million preemptions of one job, or scans past a million jobs a pass, are never meant
        config.require_int("PolicyConfig", "max_preemptions", self.max_preemptions, minimum=0,
                           maximum=1_000_000)
        config.require_int("PolicyConfig", "scan_per_queue", self.scan_per_queue, minimum=1,
                           maximum=1_000_000)
        config.require_int("PolicyConfig", "scan_total", self.scan_total, minimum=1, maximum=1_000_000)
        if not isinstance(self.release_on_preempt, bool):
            raise errors.ConfigError(f"PolicyConfig.release_on_preempt must be true or false, got "
                                     f"{self.release_on_preempt!r}", field="release_on_preempt",
                                     value=self.release_on_preempt)


@dataclasses.dataclass(slots=True)
class Decisions:
    """What one pass decided: jobs to start, to preempt (stop and re-queue), to stop for good."""

    started: list[Job] = dataclasses.field(default_factory=list)
    preempted: list[Job] = dataclasses.field(default_factory=list)
    stopped: list[tuple[Job, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class _Pass:
    fail_place: dict[str, float] = dataclasses.field(default_factory=dict)
    place_histogram: dict[str, str] = dataclasses.field(default_factory=dict)
    """type -> its nodes by free GPUs when a gang of ``fail_place`` size found none."""
    fail_quota: dict[tuple[str, str], tuple[float, str]] = dataclasses.field(default_factory=dict)
    pass_quota: dict[tuple[str, str], tuple[float, int]] = dataclasses.field(default_factory=dict)
    """(queue, type) -> (largest gang its quota allowed, usage version then)."""
    attempts: int = 0
    any_types: list[str] | None = None
    """GPU types in order of free GPUs for a gang that takes any type; None after a start."""
