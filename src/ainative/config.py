"""Shared helpers for the ``*Config`` dataclasses: one decorator, a few validators.

Every config is ``@config_dataclass`` (frozen, keyword-only, slotted) and validates itself in
``__post_init__`` with these helpers, so the error always names the config, the field, the value
and the allowed range.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from ainative import errors

T = TypeVar("T")

config_dataclass = dataclasses.dataclass(frozen=True, kw_only=True, slots=True)


def _where(owner: str, field: str) -> str:
    return f"{owner}.{field}" if owner else field


# Upper bounds past which a value is a typo or an attack, not a setting: each is far above any
# real deployment, and stated in the error. Named so that configs share one reason per unit.
MAX_DURATION_S = 10 * 365 * 86400.0
"""Timeouts, windows, TTLs: ten years."""
MAX_WORKERS = 10_000
"""Workers of one job, replicas of one endpoint, nodes of one group."""
MAX_GPUS = 1_000_000
"""GPUs in a quota or limit of one queue, per accelerator type."""
MAX_CPUS = 10_000.0
"""CPU cores of one worker."""
MAX_BYTES = float(2**50)
"""Memory of one worker (1 PiB)."""
MAX_USD = 1e12
"""Money: budgets and prices."""
MAX_AMOUNT = 1e9
"""Other counts and amounts (custom resources, weights, GPU-hours)."""


def is_finite_number(value: Any) -> bool:
    """A real int or float (not bool) that is neither NaN nor an infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def require_positive(owner: str, field: str, value: float | int | None, *, allow_none: bool = False,
                     allow_zero: bool = False, maximum: float | None = None) -> None:
    """Raise ConfigError unless ``value`` is a finite number > 0 (or >= 0, or None when allowed),
    and at most ``maximum``."""
    if value is None and allow_none:
        return
    bound = ">= 0" if allow_zero else "> 0"
    if not is_finite_number(value):
        raise errors.ConfigError(
            f"{_where(owner, field)} must be a finite number {bound}, got {value!r}",
            field=field, value=value)
    assert value is not None
    if value < 0 or (value == 0 and not allow_zero):
        raise errors.ConfigError(
            f"{_where(owner, field)} must be {bound}, got {value!r}", field=field, value=value)
    if maximum is not None and value > maximum:
        raise errors.ConfigError(
            f"{_where(owner, field)} must be <= {maximum:g}, got {value!r}", field=field,
            value=value)


def require_seconds(owner: str, field: str, value: float | int | None, *, allow_none: bool = False,
                    allow_zero: bool = False) -> None:
    """A duration in seconds: finite, > 0 (or >= 0) and at most ``MAX_DURATION_S``."""
    require_positive(owner, field, value, allow_none=allow_none, allow_zero=allow_zero,
                     maximum=MAX_DURATION_S)


def require_type(owner: str, field: str, value: Any, kind: type | tuple[type, ...], *,
                 allow_none: bool = False, example: str = "") -> None:
    """Raise ConfigError unless ``value`` is an instance of ``kind`` (bool is not an int here)."""
    if value is None and allow_none:
        return
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds) + (" or None" if allow_none else "")
        hint = f" such as {example}" if example else ""
        raise errors.ConfigError(f"{_where(owner, field)} must be {names}{hint}, got {value!r}",
                                 field=field, value=value)


def require_int(owner: str, field: str, value: Any, *, minimum: int | None = None,
                maximum: int | None = None) -> None:
    """Raise ConfigError unless ``value`` is an int within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.ConfigError(f"{_where(owner, field)} must be an integer, got {value!r}",
                                 field=field, value=value)
    if minimum is not None and value < minimum:
        raise errors.ConfigError(f"{_where(owner, field)} must be >= {minimum}, got {value}",
                                 field=field, value=value)
    if maximum is not None and value > maximum:
        raise errors.ConfigError(f"{_where(owner, field)} must be <= {maximum}, got {value}",
                                 field=field, value=value)


def require_in(owner: str, field: str, value: T, allowed: Iterable[T]) -> None:
    """Raise ConfigError unless ``value`` is one of ``allowed``."""
    options = list(allowed)
    if value not in options:
        raise errors.ConfigError(
            f"{_where(owner, field)} must be one of {', '.join(map(repr, options))}; got {value!r}",
            field=field, value=value, allowed=options)


def require_range(owner: str, field: str, value: Any, low: float, high: float, *,
                  low_open: bool = False, high_open: bool = False) -> None:
    """Raise ConfigError unless ``low <(=) value <(=) high``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lb, hb = ("(" if low_open else "["), (")" if high_open else "]")
        raise errors.ConfigError(
            f"{_where(owner, field)} must be in {lb}{low}, {high}{hb}, got {value!r}",
            field=field, value=value)


def home_dir() -> Path:
    """Where ainative keeps state on this machine: ``$AINATIVE_HOME``, else ``~/.ainative``
    (event logs, the spend ledger, the scheduler's saved state)."""
    home = os.environ.get("AINATIVE_HOME")
    return Path(home).expanduser() if home else Path.home() / ".ainative"
