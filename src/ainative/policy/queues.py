"""Queues and cohorts: the ``Queue`` config and its validation, pure Python.

A queue owns a nominal quota of GPUs per accelerator type. Queues in the same ``cohort`` lend
each other what they do not use: a queue may run above its nominal quota (borrow) up to
``borrowing_limit``, and lends at most ``lending_limit`` of its own. Borrowed GPUs are reclaimed by
preemption when their owner needs them back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ainative import config, errors, resources

DEFAULT_QUEUE = "default"


def _limits(owner: str, field: str, value: Mapping[str, float] | None) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise errors.ConfigError(
            f"{owner}.{field} must be a mapping of accelerator type -> GPUs such as {{'H100': 8}}, "
            f"got {value!r}", field=field, value=value)
    out: dict[str, float] = {}
    names = resources.normalize_quota_keys(owner, field, value)
    for key, amount in value.items():
        if not config.is_finite_number(amount) or amount < 0 or amount > config.MAX_GPUS:
            raise errors.ConfigError(
                f"{owner}.{field}[{key!r}] must be a number of GPUs in [0, {config.MAX_GPUS:,}], "
                f"got {amount!r}", field=field, value=amount)
        out[names[key]] = float(amount)
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Queue:
    """A tenant queue: nominal GPU quota per accelerator type, cohort for borrowing, fair-share weight."""

    name: str
    """Queue name, e.g. "team-a"; jobs name it with ``queue=...`` (the only positional field)."""
    _: dataclasses.KW_ONLY
    quota: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """Nominal GPUs per accelerator type, e.g. ``{"H100": 8}``; guaranteed (reclaimed by preemption)."""
    cohort: str | None = None
    """Queues with the same cohort lend each other unused quota; None: no borrowing."""
    weight: float = 1.0
    """Fair-share weight (> 0): a queue with weight 2 is entitled to twice the share of weight 1."""
    borrowing_limit: Mapping[str, float] | None = None
    """Most GPUs per type this queue may borrow above its quota; None: unlimited within the cohort."""
    lending_limit: Mapping[str, float] | None = None
    """Most GPUs per type of this queue's quota others may borrow; None: all of its unused quota."""
    budget: Any = None
    """Optional spending budget (an ``ainative`` Budget); stored for the cost guardrails."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise errors.ConfigError(f"Queue.name must be a non-empty string, got {self.name!r}",
                                     field="name", value=self.name)
        object.__setattr__(self, "quota", _limits("Queue", "quota",
                                                  {} if self.quota is None else self.quota))
        config.require_positive("Queue", "weight", self.weight, maximum=config.MAX_AMOUNT)
        if self.cohort is not None and (not isinstance(self.cohort, str) or not self.cohort):
            raise errors.ConfigError(f"Queue.cohort must be a non-empty string or None, got {self.cohort!r}",
                                     field="cohort", value=self.cohort)
        for field in ("borrowing_limit", "lending_limit"):
            limits = _limits("Queue", field, getattr(self, field))
            if limits is not None and self.cohort is None:
                raise errors.ConfigError(
                    f"Queue {self.name!r}: {field} needs a cohort to borrow from or lend to; set "
                    "cohort='...' or drop the limit", field=field, value=limits)
            object.__setattr__(self, field, limits)
        if self.budget is not None:
            from ainative.policy import pricing

            if not isinstance(self.budget, pricing.Budget):
                raise errors.ConfigError(
                    f"Queue.budget: the budget of queue {self.name!r} must be an ainative.Budget "
                    f"such as Budget(usd=1000, period='month'), got {self.budget!r}",
                    field="budget", value=self.budget)
        for key, amount in (self.lending_limit or {}).items():
            if amount > self.quota.get(key, 0.0):
                raise errors.ConfigError(
                    f"Queue {self.name!r}: lending_limit[{key!r}]={amount:g} exceeds its quota "
                    f"{self.quota.get(key, 0.0):g}; a queue can lend at most its quota",
                    field="lending_limit", value=amount)

    def nominal(self, gpu_type: str) -> float:
        return self.quota.get(gpu_type, 0.0)

    def can_borrow(self, gpu_type: str) -> float:
        if self.cohort is None:
            return 0.0
        if self.borrowing_limit is None:
            return math.inf
        return self.borrowing_limit.get(gpu_type, 0.0)

    def lendable(self, gpu_type: str) -> float:
        if self.cohort is None:
            return 0.0
        if self.lending_limit is None:
            return self.nominal(gpu_type)
        return self.lending_limit.get(gpu_type, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "quota": dict(self.quota), "cohort": self.cohort, "weight": self.weight,
                "borrowing_limit": self.borrowing_limit, "lending_limit": self.lending_limit,
                "budget": None if self.budget is None else dataclasses.asdict(self.budget)}


def validate_queues(queues: Sequence[Queue], gpu_types: Iterable[str] | None = None) -> list[str]:
    """Raise ConfigError for duplicates or a non-Queue; return warnings (quota on an absent type)."""
    seen: set[str] = set()
    for q in queues:
        if not isinstance(q, Queue):
            raise errors.ConfigError(f"queues must be ainative.Queue objects, got {q!r}",
                                     field="queues", value=q)
        if q.name in seen:
            raise errors.ConfigError(f"queue {q.name!r} is defined twice; queue names must be unique",
                                     field="name", value=q.name)
        seen.add(q.name)
    warnings: list[str] = []
    if gpu_types is not None:
        known = {t.upper() for t in gpu_types}
        for q in queues:
            for key in sorted(q.quota):
                if key not in known:
                    warnings.append(f"queue {q.name!r} has quota for {key}, which the cluster lacks "
                                    f"(it has: {', '.join(sorted(known)) or 'no GPUs'})")
    return warnings
