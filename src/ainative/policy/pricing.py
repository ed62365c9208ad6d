"""Prices, budgets and idle policies: the configs behind the cost guardrails, plus pure arithmetic.

``PriceTable`` turns allocated accelerator-seconds (and CPU core-seconds) into money;
``Budget`` caps spend in USD and/or GPU-hours, per job or per queue and period;
``IdlePolicy`` says when idle accelerators are reclaimed. Nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping
from typing import Any, cast

from ainative import config, errors, resources

# Sample on-demand list prices in USD per GPU-hour (late 2026, rounded): a sane default so that a
# budget in USD means something before an operator sets the real contract prices.
DEFAULT_GPU_HOUR_USD: Mapping[str, float] = {
    "GB200": 10.50, "B200": 6.50, "H200": 5.00, "H100": 4.00, "A100": 1.80, "L40S": 1.20,
    "A10G": 1.00, "L4": 0.70, "T4": 0.35, "V100": 0.90, "MI300X": 3.50, "TPU-V5E": 1.20,
}
DEFAULT_CPU_CORE_HOUR_USD = 0.04
CURRENCIES = ("USD",)
PERIODS = ("day", "week", "month")
BUDGET_ACTIONS = ("stop", "min_replicas")
IDLE_ACTIONS = ("stop", "warn")


def _number(owner: str, field: str, value: Any, maximum: float = config.MAX_USD) -> float:
    if not config.is_finite_number(value) or value < 0 or value > maximum:
        raise errors.ConfigError(
            f"{owner}.{field} must be a finite number in [0, {maximum:g}], got {value!r}",
            field=field, value=value)
    return float(value)


MAX_GPU_HOUR_USD = 10_000.0
"""No accelerator costs more than this per hour; a larger price is a typo (cents for dollars)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PriceTable:
    """Money per accelerator type: ``PriceTable({"H100": 4.00, "L4": 0.70})`` (USD per GPU-hour).

    Types missing from the table fall back to ``DEFAULT_GPU_HOUR_USD`` and then to
    ``unknown_gpu_hour_usd``; CPU-only work is priced per core-hour.
    """

    gpu_hour_usd: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """USD per GPU-hour by accelerator type ("H100", "nvidia-a100" ...); overrides the defaults."""
    cpu_core_hour_usd: float = DEFAULT_CPU_CORE_HOUR_USD
    """USD per CPU core-hour; applies to every reserved core (GPU jobs' host CPUs included)."""
    unknown_gpu_hour_usd: float | None = None
    """USD per GPU-hour for a type in neither table; None refuses unknown types (ConfigError)."""
    currency: str = "USD"
    """Only USD for now: budgets and reports are in one currency."""
    use_defaults: bool = True
    """Fall back to the sample list prices in DEFAULT_GPU_HOUR_USD for types not given."""

    def __post_init__(self) -> None:
        if not isinstance(self.gpu_hour_usd, Mapping):
            raise errors.ConfigError(
                "PriceTable.gpu_hour_usd must be a mapping such as {'H100': 4.0}, got "
                f"{self.gpu_hour_usd!r}", field="gpu_hour_usd", value=self.gpu_hour_usd)
        names = resources.normalize_quota_keys("PriceTable", "gpu_hour_usd", self.gpu_hour_usd)
        table = {names[k]: _number("PriceTable", f"gpu_hour_usd[{k!r}]", v, MAX_GPU_HOUR_USD)
                 for k, v in self.gpu_hour_usd.items()}
        object.__setattr__(self, "gpu_hour_usd", table)
        _number("PriceTable", "cpu_core_hour_usd", self.cpu_core_hour_usd, MAX_GPU_HOUR_USD)
        if self.unknown_gpu_hour_usd is not None:
            _number("PriceTable", "unknown_gpu_hour_usd", self.unknown_gpu_hour_usd, MAX_GPU_HOUR_USD)
        config.require_in("PriceTable", "currency", self.currency, CURRENCIES)
        config.require_type("PriceTable", "use_defaults", self.use_defaults, bool)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTable:
        """From YAML: ``{gpu_hour_usd: {H100: 4.0}, cpu_core_hour_usd: 0.05, currency: USD}``."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise errors.ConfigError(
                f"PriceTable has no field(s) {unknown}; allowed: {sorted(allowed)}",
                field=unknown[0], value=data[unknown[0]])
        return cls(**dict(data))

    def gpu_hour_price(self, accelerator_type: str) -> float:
        """USD per GPU-hour of ``accelerator_type``."""
        name = resources.normalize_accelerator_type(accelerator_type)
        if name in self.gpu_hour_usd:
            return self.gpu_hour_usd[name]
        if self.use_defaults and name in DEFAULT_GPU_HOUR_USD:
            return DEFAULT_GPU_HOUR_USD[name]
        if self.unknown_gpu_hour_usd is not None:
            return self.unknown_gpu_hour_usd
        raise errors.ConfigError(
            f"PriceTable has no price for accelerator type {name!r}; add it to gpu_hour_usd or set "
            "unknown_gpu_hour_usd", field="gpu_hour_usd", value=name)

    def rate_usd_per_s(self, gpus: Mapping[str, float], cpus: float = 0.0) -> float:
        """Spend rate of an allocation: ``gpus`` by accelerator type plus ``cpus`` cores."""
        per_hour = sum(self.gpu_hour_price(t) * n for t, n in gpus.items())
        return (per_hour + self.cpu_core_hour_usd * cpus) / 3600.0

    def cost_usd(self, gpus: Mapping[str, float], cpus: float, seconds: float) -> float:
        """Money for holding the allocation for ``seconds``."""
        return self.rate_usd_per_s(gpus, cpus) * max(0.0, seconds)


def allocation_of(bundles: Any) -> tuple[dict[str, float], float]:
    """GPUs by accelerator type and total CPU cores of a sequence of ``Resources`` (an untyped
    GPU request is counted under "GPU")."""
    gpus: dict[str, float] = {}
    cpus = 0.0
    for bundle in bundles:
        cpus += float(bundle.cpus)
        if bundle.accelerator is not None:
            kind = bundle.accelerator.type
            gpus[kind] = gpus.get(kind, 0.0) + float(bundle.accelerator.count)
    return gpus, cpus


@config.config_dataclass
class Budget:
    """A spend cap: ``Budget(usd=5_000, period="month", warn_at=0.8)``. At ``warn_at`` of either
    cap a warning is raised; at 100% the ``action`` applies (training checkpoints and stops)."""

    usd: float | None = None
    """Cap in USD (priced through the PriceTable); None: no money cap."""
    gpu_hours: float | None = None
    """Cap in allocated GPU-hours of any type; None: no GPU-hour cap."""
    period: str | None = None
    """"day", "week" or "month" (calendar, UTC) for queue budgets; None: for the whole lifetime."""
    warn_at: float = 0.8
    """Fraction of a cap, in (0, 1], at which a warning event and log line are emitted."""
    action: str = "stop"
    """At 100%: "stop" (checkpoint and stop) or "min_replicas": an endpoint's replicas above
    ``min_replicas`` (and every other job of the scope) stop early enough to leave its
    ``min_replicas`` their spend until the period ends (or the endpoint's
    ``expected_duration_s``); those stop at the cap itself. A lifetime budget of an endpoint
    with no ``expected_duration_s`` cannot reserve that, so there they serve on past the cap
    (flagged once)."""

    def __post_init__(self) -> None:
        for name, maximum in (("usd", config.MAX_USD), ("gpu_hours", config.MAX_AMOUNT)):
            value = getattr(self, name)
            if value is not None:
                _number("Budget", name, value, maximum)
        if self.usd is None and self.gpu_hours is None:
            raise errors.ConfigError(
                "Budget needs usd=... or gpu_hours=... (or both); got neither", field="usd", value=None)
        if self.period is not None:
            config.require_in("Budget", "period", self.period, PERIODS)
        config.require_range("Budget", "warn_at", self.warn_at, 0.0, 1.0, low_open=True)
        config.require_in("Budget", "action", self.action, BUDGET_ACTIONS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        """From YAML; an unknown key (say ``eur``) is a ConfigError naming it."""
        allowed = {f.name for f in dataclasses.fields(cast(Any, cls))}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise errors.ConfigError(
                f"Budget has no field {unknown[0]!r} (only USD is supported); allowed: {sorted(allowed)}",
                field=unknown[0], value=data[unknown[0]])
        return cls(**dict(data))

    def period_end(self, now_s: float) -> float:
        """Epoch seconds at which the current period ends (``inf`` for lifetime budgets)."""
        if self.period is None:
            return float("inf")
        start = dt.datetime.fromtimestamp(self.period_start(now_s), tz=dt.timezone.utc)
        if self.period == "day":
            end = start + dt.timedelta(days=1)
        elif self.period == "week":
            end = start + dt.timedelta(days=7)
        else:
            end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return end.timestamp()

    def period_start(self, now_s: float) -> float:
        """Epoch seconds at which the current period began (0.0 for lifetime budgets)."""
        if self.period is None:
            return 0.0
        day = dt.datetime.fromtimestamp(now_s, tz=dt.timezone.utc).replace(
            hour=0, minute=0, second=0, microsecond=0)
        if self.period == "week":
            day -= dt.timedelta(days=day.weekday())
        elif self.period == "month":
            day = day.replace(day=1)
        return day.timestamp()


@config.config_dataclass
class IdlePolicy:
    """When idle accelerators are reclaimed. Jobs: utilisation under ``threshold`` for
    ``window_s`` -> warned at ``warn_after_s``, then checkpointed and released. Endpoints: no
    traffic for ``scale_to_zero_after_s`` -> scale to zero."""

    scale_to_zero_after_s: float | None = None
    """Endpoints: seconds without a request before replicas go to zero; None: never."""
    threshold: float = 0.05
    """Utilisation (0-1) under which an accelerator counts as idle; 5% ignores monitoring noise."""
    window_s: float = 1800.0
    """Jobs: seconds of continuous idleness before the action (30 min, like Run:ai's default)."""
    warn_after_s: float | None = None
    """Jobs: seconds of idleness before a warning; None: half of window_s."""
    action: str = "stop"
    """"stop" (checkpoint and release) or "warn" (only warn)."""

    def __post_init__(self) -> None:
        config.require_seconds("IdlePolicy", "scale_to_zero_after_s", self.scale_to_zero_after_s,
                               allow_none=True)
        config.require_range("IdlePolicy", "threshold", self.threshold, 0.0, 1.0)
        config.require_seconds("IdlePolicy", "window_s", self.window_s)
        config.require_seconds("IdlePolicy", "warn_after_s", self.warn_after_s, allow_none=True,
                               allow_zero=True)
        if self.warn_after_s is not None and self.warn_after_s > self.window_s:
            raise errors.ConfigError(
                f"IdlePolicy.warn_after_s ({self.warn_after_s}) must be <= window_s ({self.window_s})",
                field="warn_after_s", value=self.warn_after_s)
        config.require_in("IdlePolicy", "action", self.action, IDLE_ACTIONS)

    @property
    def warn_s(self) -> float:
        return self.window_s / 2 if self.warn_after_s is None else self.warn_after_s


def _reject_unknown_fields(cls: type) -> None:
    """Make ``cls(eur=5)`` (or a positional value) a ConfigError naming the field, not a bare
    TypeError: a misspelt currency must never silently mean "no budget"."""
    generated = cast(Any, cls).__init__
    allowed = tuple(f.name for f in dataclasses.fields(cast(Any, cls)))

    @functools.wraps(generated)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if args:
            raise errors.ConfigError(
                f"{cls.__name__} takes keyword arguments only ({', '.join(allowed)}), got "
                f"positional {args!r}", field="args", value=args)
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise errors.ConfigError(
                f"{cls.__name__} has no field {unknown[0]!r} (amounts are in USD: usd=...); "
                f"allowed: {', '.join(allowed)}", field=unknown[0], value=kwargs[unknown[0]])
        generated(self, **kwargs)

    cls.__init__ = __init__  # type: ignore[misc]


_reject_unknown_fields(Budget)
_reject_unknown_fields(IdlePolicy)
