"""The records guardrails work on: a job's priced shape, one metered charge, and the in-memory spend
book (per scope and period) that the SQLite ledger seeds after a restart."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ainative.policy import pricing


@dataclasses.dataclass(frozen=True, slots=True)
class JobSpec:
    """What guardrails need to know about a job."""

    name: str
    queue: str | None = None
    gpus: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """GPUs held by accelerator type for the whole gang, e.g. {"H100": 8}."""
    cpus: float = 0.0
    """CPU cores held by the whole gang."""
    max_runtime_s: float | None = None
    expected_duration_s: float | None = None
    budget: pricing.Budget | None = None
    idle: pricing.IdlePolicy | None = None
    team: str | None = None
    """Who pays, for reports; defaults to the queue."""
    floor: bool = False
    """An endpoint's guaranteed replicas (its ``min_replicas`` lease). Under a
    ``Budget(action="min_replicas")`` it stops last: the scope's other jobs stop early enough to
    leave it its spend to the budget's horizon."""

    def __post_init__(self) -> None:
        if self.team is None:
            object.__setattr__(self, "team", self.queue)


@dataclasses.dataclass(frozen=True, slots=True)
class Charge:
    """Spend of one job on one accelerator type (or "CPU") over ``[start_s, end_s)``."""

    job: str
    queue: str | None
    team: str | None
    accelerator: str
    start_s: float
    end_s: float
    gpu_seconds: float
    cost_usd: float

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Scope:
    """Charges of one scope sorted by end time, with prefix sums, so that "spent since t" is a
    bisect plus a short scan over the charges that straddle t (exact: none is longer than
    ``longest_s``)."""

    __slots__ = ("charges", "ends", "hours", "longest_s", "usd")

    def __init__(self) -> None:
        self.charges: list[Charge] = []
        self.ends: list[float] = []
        self.usd: list[float] = [0.0]
        self.hours: list[float] = [0.0]
        self.longest_s = 0.0

    def add(self, charge: Charge) -> None:
        if self.ends and charge.end_s < self.ends[-1]:
            index = bisect.bisect_right(self.ends, charge.end_s)
            self.charges.insert(index, charge)
            self.ends.insert(index, charge.end_s)
            self.usd, self.hours = [0.0], [0.0]
            for c in self.charges:
                self.usd.append(self.usd[-1] + c.cost_usd)
                self.hours.append(self.hours[-1] + c.gpu_hours)
        else:
            self.charges.append(charge)
            self.ends.append(charge.end_s)
            self.usd.append(self.usd[-1] + charge.cost_usd)
            self.hours.append(self.hours[-1] + charge.gpu_hours)
        self.longest_s = max(self.longest_s, charge.end_s - charge.start_s)

    def since(self, since_s: float) -> tuple[float, float]:
        first = bisect.bisect_right(self.ends, since_s)
        usd, hours = self.usd[-1] - self.usd[first], self.hours[-1] - self.hours[first]
        index = first
        while index < len(self.charges) and self.ends[index] < since_s + self.longest_s:
            c = self.charges[index]
            if c.start_s < since_s:  # straddles: count only the part after since_s
                outside = (since_s - c.start_s) / (c.end_s - c.start_s)
                usd -= c.cost_usd * outside
                hours -= c.gpu_hours * outside
            index += 1
        return usd, hours


class SpendBook:
    """Spend per scope ("job:<name>", "queue:<name>"), so that any period's sum can be taken. A
    live scheduler seeds it from the ledger; the simulator starts it empty."""

    def __init__(self, charges: Iterable[Charge] = ()) -> None:
        self._scopes: dict[str, _Scope] = {}
        for charge in charges:
            self.add(charge)

    def add(self, charge: Charge) -> None:
        if charge.end_s <= charge.start_s:
            return
        self._scopes.setdefault(f"job:{charge.job}", _Scope()).add(charge)
        if charge.queue is not None:
            self._scopes.setdefault(f"queue:{charge.queue}", _Scope()).add(charge)

    def spent(self, scope: str, since_s: float = 0.0) -> tuple[float, float]:
        """USD and GPU-hours charged to ``scope`` since ``since_s`` (a charge that straddles it
        counts pro rata)."""
        found = self._scopes.get(scope)
        return found.since(since_s) if found is not None else (0.0, 0.0)
