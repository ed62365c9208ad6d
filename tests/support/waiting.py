"""Waiting on a condition with a deadline: the one way tests wait (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(what: str, predicate: Callable[[], Any], timeout_s: float = 60.0,
          interval_s: float = 0.2) -> Any:
    """Poll ``predicate()`` until it returns something truthy, and return that; after
    ``timeout_s`` raise AssertionError naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; "
                                 f"last: {last!r}")
        time.sleep(interval_s)
