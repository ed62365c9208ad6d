"""Accelerator utilisation probes: a callable returning the mean utilisation (0-1) of the GPUs this
process can see, or None when it cannot tell.

``NvmlProbe`` reads NVML through ``nvidia-ml-py`` (imported lazily, only when asked, so CPU machines
never need it); ``ManualProbe`` is the pluggable probe that tests and CPU-only demos drive.

Probes that run in *another* process (a serving replica, a training worker) are named by a string,
so the choice travels as an environment variable (``AINATIVE_UTILIZATION_PROBE``, see
:func:`resolve_probe`): ``"nvml"``, ``"none"``, ``"file:/path"`` (a number in a file that an
exporter, or a test, writes) or ``"package.module:attribute"`` (a probe, or a probe class
made with no arguments, importable in that process).
"""

from __future__ import annotations

import importlib
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


PROBE_ENV = "AINATIVE_UTILIZATION_PROBE"
"""Names a probe as ``module:function`` (a callable returning 0-1 or None; a class is instantiated
first). Read in the driver and run in every training worker: how CPU-only tests drive idle reclaim."""


def load(spec: str) -> UtilizationProbe:
    """The probe a name means, for a worker (see ``resolve_probe``): "none" reads nothing."""
    probe = resolve_probe(spec)
    return probe if probe is not None else _no_reading


def _no_reading() -> float | None:
    return None


def configured_probe_spec() -> str | None:
    """The probe this driver's jobs run in their workers (``$AINATIVE_UTILIZATION_PROBE``), checked
    here so that a bad name fails before anything is reserved; None: NVML in the workers."""
    spec = os.environ.get(PROBE_ENV) or None
    if spec is not None:
        load(spec)
    return spec


def worker_probe(spec: str | None) -> UtilizationProbe:
    """The probe a worker runs in its own process: the named one, else NVML over the GPUs this
    process sees (None readings on a machine without them)."""
    return load(spec) if spec else NvmlProbe()


class FileProbe:
    """Reads a utilisation (0-1) written as text into ``path`` by something else; None while the
    file is missing or unreadable (unknown, not idle)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> float | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                value = float(fh.read().strip())
        except (OSError, ValueError):
            return None
        return min(1.0, max(0.0, value))


def resolve_probe(spec: str | None) -> UtilizationProbe | None:
    """The probe a name means (see the module docstring); None or "" means ``default_probe()``.
    A name that cannot be resolved is a ConfigError naming it."""
    from ainative import errors

    if spec is None or not spec.strip() or spec == "auto":
        return default_probe()
    spec = spec.strip()
    if spec == "none":
        return None
    if spec == "nvml":
        return NvmlProbe()
    if spec.startswith("file:"):
        return FileProbe(spec[len("file:"):])
    module, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module), attr) if attr else None
    except (ImportError, AttributeError) as exc:
        raise errors.ConfigError(f"{PROBE_ENV}={spec!r} cannot be loaded ({exc})", field=PROBE_ENV,
                                 value=spec) from None
    if target is None or not callable(target):
        raise errors.ConfigError(f"{PROBE_ENV}={spec!r} must be 'nvml', 'none', 'file:PATH' or "
                                 "'module:attribute' naming a probe", field=PROBE_ENV, value=spec)
    probe = target() if isinstance(target, type) else target
    return probe  # type: ignore[no-any-return]


def probe_from_env() -> UtilizationProbe | None:
    """The probe this process should run: ``$AINATIVE_UTILIZATION_PROBE``, else NVML if a GPU can
    be read, else None."""
    return resolve_probe(os.environ.get(PROBE_ENV))
