"""Admission: gang placement now; queues, quotas, fair share and preemption build on it."""

from ainative.scheduling.placement import Gang, reserve


def __getattr__(name: str):  # noqa: ANN202 - lazy: the live scheduler pulls in the policy engine
    if name in ("configure", "status", "why", "shutdown"):
        from ainative.scheduling import api

        return getattr(api, name)
    raise AttributeError(f"module 'ainative.scheduling' has no attribute {name!r}")


__all__ = ["Gang", "configure", "reserve", "shutdown", "status", "why"]
