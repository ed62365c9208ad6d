"""Shared helpers for the ``*Config`` dataclasses: one decorator, a few validators.

Every config is ``@config_dataclass`` (frozen, keyword-only, slotted) and validates itself in
``__post_init__`` with these helpers, so the error always names the config, the field, the value
and the allowed range.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from ainative import errors

T = TypeVar("T")

config_dataclass = dataclasses.dataclass(frozen=True, kw_only=True, slots=True)


def _where(owner: str, field: str) -> str:
    return f"{owner}.{field}" if owner else field


def require_positive(owner: str, field: str, value: float | int | None, *, allow_none: bool = False,
                     allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a number > 0 (or >= 0, or None when allowed)."""
    if value is None and allow_none:
        return
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.ConfigError(
            f"{_where(owner, field)} must be a number {bound}, got {value!r}",
            field=field, value=value)
    if value < 0 or (value == 0 and not allow_zero):
        raise errors.ConfigError(
            f"{_where(owner, field)} must be {bound}, got {value!r}", field=field, value=value)


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
