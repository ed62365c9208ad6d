"""Utilisation probes for tests, named by ``$AINATIVE_UTILIZATION_PROBE=tests.support.probes:idle``
and run inside training workers. ``CALLS`` counts readings in the process that made them."""

from __future__ import annotations

CALLS = 0


def idle() -> float:
    global CALLS
    CALLS += 1
    return 0.0


def busy() -> float:
    global CALLS
    CALLS += 1
    return 1.0
