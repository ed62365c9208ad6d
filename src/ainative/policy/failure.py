"""Pure decisions for training controllers: retry or give up after a failure, and what world size
to run at (elastic jobs). No Ray imports; the controller acts on the returned decisions.
"""

from __future__ import annotations

import dataclasses
import enum


class FailureKind(enum.Enum):
    SYSTEM = "system"      # a worker process or its node died, a collective broke
    HANG = "hang"          # a rank made no progress within the deadline
    USER = "user"          # user code raised


class Action(enum.Enum):
    RESTART = "restart"
    FAIL = "fail"


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, as the controller saw it."""

    kind: FailureKind
    rank: int | None = None
    node_id: str | None = None
    reason: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class FailureDecision:
    action: Action
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class FailurePolicy:
    """Restart system failures and hangs up to ``max_restarts``; user errors only if asked."""

    max_restarts: int
    retry_user_errors: bool = False

    def decide(self, failure: Failure, restarts_so_far: int) -> FailureDecision:
        if failure.kind is FailureKind.USER and not self.retry_user_errors:
            return FailureDecision(Action.FAIL, "user code raised; retry_user_errors is off")
        if restarts_so_far >= self.max_restarts:
            return FailureDecision(
                Action.FAIL, f"{restarts_so_far} restart(s) used of max_restarts={self.max_restarts}")
        return FailureDecision(
            Action.RESTART, f"restart {restarts_so_far + 1} of {self.max_restarts} after a "
                            f"{failure.kind.value} failure")


@dataclasses.dataclass(frozen=True, slots=True)
class ScalingDecision:
    """``workers``: the world size to (re)start at; None: keep the current group as it is."""

    workers: int | None
    reason: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """World size between ``min_workers`` and ``max_workers``.

    ``fit`` is how many workers the cluster could hold now (the job's own workers included).
    A fixed-size job has ``min_workers == max_workers``.
    """

    min_workers: int
    max_workers: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError(f"need 1 <= min_workers <= max_workers, got "
                             f"{self.min_workers}, {self.max_workers}")

    @property
    def elastic(self) -> bool:
        return self.min_workers < self.max_workers

    def initial(self, fit: int) -> ScalingDecision:
        """Size to start (or restart) with: as many as fit, at least ``min_workers``.

        When fewer than the minimum fit now, ask for the minimum and let the gang wait for it.
        """
        size = max(self.min_workers, min(self.max_workers, fit))
        return ScalingDecision(size, f"{fit} worker(s) fit now; range "
                                     f"[{self.min_workers}, {self.max_workers}]")

    def on_checkpoint(self, current: int, fit: int) -> ScalingDecision:
        """At a checkpoint boundary: grow when more workers fit than run now, else keep going.

        Shrinking is never decided here: a job only shrinks after losing workers (a failure).
        """
        target = min(self.max_workers, fit)
        if self.elastic and target > current:
            return ScalingDecision(target, f"capacity for {target} worker(s), running {current}")
        return ScalingDecision(None)
