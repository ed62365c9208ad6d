"""Accelerator utilisation probes: a callable returning the mean utilisation (0-1) of the GPUs this
process can see, or None when it cannot tell.

``NvmlProbe`` reads NVML through ``nvidia-ml-py`` (imported lazily, only when asked, so CPU machines
never need it); ``ManualProbe`` is the pluggable probe that tests and CPU-only demos drive.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol


class UtilizationProbe(Protocol):
    def __call__(self) -> float | None: ...


class ManualProbe:
    """A probe whose reading is set by hand (tests, demos): ``probe.set(0.0)`` makes the job idle."""

    def __init__(self, value: float | None = None) -> None:
        self._value = value
        self._lock = threading.Lock()

    def set(self, value: float | None) -> None:
        with self._lock:
            self._value = value

    def __call__(self) -> float | None:
        with self._lock:
            return self._value


class NvmlProbe:
    """Mean ``nvmlDeviceGetUtilizationRates().gpu`` over ``devices`` (default: CUDA_VISIBLE_DEVICES,
    else every device). Returns None when NVML or a GPU is missing."""

    def __init__(self, devices: Sequence[int] | None = None) -> None:
        self._devices = list(devices) if devices is not None else None
        self._nvml: Any = None
        self._handles: list[Any] | None = None

    def _open(self) -> bool:
        if self._handles is not None:
            return bool(self._handles)
        try:
            import pynvml  # from nvidia-ml-py; optional

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except Exception:  # no library, no driver or no GPU: utilisation is unknown, not zero
            self._handles = []
            return False
        indices = self._devices if self._devices is not None else _visible_devices(count)
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices if 0 <= i < count]
        return bool(self._handles)

    def __call__(self) -> float | None:
        if not self._open():
            return None
        assert self._handles is not None
        try:
            rates = [self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles]
        except Exception:
            return None
        return sum(rates) / (100.0 * len(rates))


def _visible_devices(count: int) -> list[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return list(range(count))
    return [int(x) for x in visible.split(",") if x.strip().isdigit()]


def default_probe() -> UtilizationProbe | None:
    """NVML when a GPU can be read, else None (utilisation unknown: idle reclaim stays off)."""
    probe = NvmlProbe()
    return probe if probe() is not None else None
