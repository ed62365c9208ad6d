"""Admission: gang placement now; queues, quotas, fair share and preemption build on it."""

from ainative.scheduling.placement import Gang, reserve

__all__ = ["Gang", "reserve"]
