"""The accelerator-first resource model.

``Accelerator("H100", count=1)`` and ``Resources(cpus=1, memory_bytes=None, accelerator=None,
custom=None)`` are what every primitive asks for. They map onto Ray in one place (here):

- ``count`` becomes ``num_gpus`` (fractions below 1 are a share of one device);
- the type becomes a request of ``ACCELERATOR_SHARE`` of the ``accelerator_type:<TYPE>`` custom
  resource. Ray advertises that resource with quantity 1 on every node of that type, so a tiny
  share routes by type without limiting how many workers a node takes;
- ``memory_bytes`` becomes Ray's ``memory`` resource.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from ainative import config, errors

ACCELERATOR_PREFIX = "accelerator_type:"
# Share of the per-node accelerator_type resource that one request takes: small enough that a
# node of that type never runs out of it before it runs out of GPUs.
ACCELERATOR_SHARE = 0.001

KNOWN_TYPES: tuple[str, ...] = (
    "GB200", "B200", "B100", "H200", "H100", "H20", "H800", "A100", "A800", "A10G", "A10", "L40S",
    "L40", "L4", "T4", "V100", "P100", "P4", "K80", "A40", "A30", "RTX6000", "MI300X", "MI250X",
    "MI210", "GAUDI2", "TPU-V5E", "TPU-V4",
)
MAX_ACCELERATORS_PER_WORKER = 1024
"""No machine holds more accelerators than this; a larger count per worker is a typo."""
_VENDOR = re.compile(r"^(NVIDIA|TESLA|AMD|INTEL|GOOGLE)[-_ ]+", re.IGNORECASE)


def normalize_accelerator_type(name: str) -> str:
    """``"h100"``, ``"NVIDIA-H100"`` or ``"NVIDIA H100 80GB HBM3"`` -> ``"H100"``; unknown names are
    kept (upper-cased, spaces to dashes) so that custom hardware still routes by name."""
    if not isinstance(name, str) or not name.strip():
        raise errors.ConfigError(
            f"Accelerator.type must be a non-empty string such as 'H100', got {name!r}",
            field="type", value=name)
    text = name.strip().upper().replace(" ", "-")
    while True:
        stripped = _VENDOR.sub("", text)
        if stripped == text:
            break
        text = stripped
    head = re.split(r"[-_]", text, maxsplit=1)[0]
    for known in KNOWN_TYPES:
        if text == known or head == known:
            return known
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class Accelerator:
    """An accelerator request: a device type and how many (or what share of one)."""

    type: str
    """Device type, e.g. ``"H100"``; known names are normalised, unknown names are allowed."""
    count: float = 1
    """Devices per worker: 0 < count < 1 is a share of one device, above 1 must be whole."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", normalize_accelerator_type(self.type))
        count = self.count
        if not config.is_finite_number(count):
            raise errors.ConfigError(f"Accelerator.count must be a finite number, got {count!r}",
                                     field="count", value=count)
        if count > MAX_ACCELERATORS_PER_WORKER:
            raise errors.ConfigError(
                f"Accelerator.count must be <= {MAX_ACCELERATORS_PER_WORKER} per worker, got "
                f"{count!r}; ask for more workers instead", field="count", value=count)
        if count <= 0:
            raise errors.ConfigError(
                f"Accelerator.count must be > 0, got {count!r}; leave accelerator=None for CPU work",
                field="count", value=count)
        if count > 1 and not float(count).is_integer():
            raise errors.ConfigError(
                f"Accelerator.count above 1 must be whole (e.g. 2), got {count!r}; fractions are "
                "only for sharing one device (0 < count < 1)", field="count", value=count)
        if float(count).is_integer():
            object.__setattr__(self, "count", int(count))

    @property
    def resource_name(self) -> str:
        """The Ray custom resource that routes to this type."""
        return ACCELERATOR_PREFIX + self.type

    @property
    def fractional(self) -> bool:
        return self.count < 1


@dataclasses.dataclass(frozen=True, slots=True)
class Resources:
    """What one worker needs: CPUs, memory, an accelerator and any custom Ray resources."""

    cpus: float = 1
    """CPU cores per worker (fractions allowed); 1 by default like a Ray actor that does work."""
    memory_bytes: int | None = None
    """Memory reserved per worker in bytes; None reserves none (Ray's default)."""
    accelerator: Accelerator | None = None
    """Accelerator per worker; None for CPU-only work."""
    custom: Mapping[str, float] | None = None
    """Extra Ray custom resources per worker, e.g. ``{"ssd": 1}``."""

    def __post_init__(self) -> None:
        config.require_positive("Resources", "cpus", self.cpus, allow_zero=True,
                                maximum=config.MAX_CPUS)
        if self.memory_bytes is not None:
            config.require_int("Resources", "memory_bytes", self.memory_bytes, minimum=1,
                               maximum=int(config.MAX_BYTES))
        if self.accelerator is not None and not isinstance(self.accelerator, Accelerator):
            raise errors.ConfigError(
                "Resources.accelerator must be an ainative.Accelerator such as Accelerator('H100'), "
                f"got {self.accelerator!r}", field="accelerator", value=self.accelerator)
        if self.custom is not None:
            object.__setattr__(self, "custom", _custom(self.custom))
        if self.cpus == 0 and self.accelerator is None and not self.custom and not self.memory_bytes:
            raise errors.ConfigError(
                "Resources asks for nothing (cpus=0, no accelerator, memory or custom); ask for at "
                "least a fraction of a CPU, e.g. cpus=0.1", field="cpus", value=0)

    @property
    def gpus(self) -> float:
        return self.accelerator.count if self.accelerator else 0

    def to_bundle(self) -> dict[str, float]:
        """The placement-group bundle (Ray resource names -> amounts)."""
        bundle: dict[str, float] = {}
        if self.cpus:
            bundle["CPU"] = float(self.cpus)
        if self.accelerator is not None:
            bundle["GPU"] = float(self.accelerator.count)
            bundle[self.accelerator.resource_name] = ACCELERATOR_SHARE
        if self.memory_bytes:
            bundle["memory"] = float(self.memory_bytes)
        for key, value in (self.custom or {}).items():
            bundle[key] = float(value)
        return bundle

    def to_ray_options(self) -> dict[str, Any]:
        """Options for ``ray.remote(...).options(**opts)`` of an actor or task."""
        opts: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        custom: dict[str, float] = dict(self.custom or {})
        if self.accelerator is not None:
            custom[self.accelerator.resource_name] = ACCELERATOR_SHARE
        if custom:
            opts["resources"] = custom
        if self.memory_bytes:
            opts["memory"] = self.memory_bytes
        return opts

    def describe(self) -> str:
        parts = [f"{self.cpus:g} CPU"]
        if self.accelerator is not None:
            parts.append(f"{self.accelerator.count:g} x {self.accelerator.type}")
        if self.memory_bytes:
            parts.append(f"{self.memory_bytes / 2**30:.1f} GiB")
        parts += [f"{v:g} {k}" for k, v in (self.custom or {}).items()]
        return "{" + ", ".join(parts) + "}"


def _custom(custom: Any) -> dict[str, float]:
    if not isinstance(custom, Mapping):
        raise errors.ConfigError(f"Resources.custom must be a mapping such as {{'ssd': 1}}, got "
                                 f"{custom!r}", field="custom", value=custom)
    for key, value in custom.items():
        if not isinstance(key, str) or not key or key in ("CPU", "GPU", "memory") \
                or key.startswith(ACCELERATOR_PREFIX):
            raise errors.ConfigError(
                f"Resources.custom key {key!r} is reserved or not a string; use cpus, "
                "accelerator or memory_bytes", field="custom", value=key)
        if not config.is_finite_number(value) or value <= 0 or value > config.MAX_AMOUNT:
            raise errors.ConfigError(
                f"Resources.custom[{key!r}] must be a finite number in (0, {config.MAX_AMOUNT:g}], "
                f"got {value!r}", field="custom", value=value)
    return dict(custom)


def normalize_quota_keys(owner: str, field: str, keys: Any) -> dict[Any, str]:
    """Each accelerator-type key -> its normalised type, refusing two keys that name one type
    (``{"h100": 4, "nvidia-h100": 8}``): one of them would silently win."""
    out: dict[Any, str] = {}
    first: dict[str, Any] = {}
    for key in keys:
        if not isinstance(key, str) or not key.strip():
            raise errors.ConfigError(f"{owner}.{field} keys must be accelerator type names such as "
                                     f"'H100', got {key!r}", field=field, value=key)
        name = normalize_accelerator_type(key)
        if name in first:
            raise errors.ConfigError(
                f"{owner}.{field} has both {first[name]!r} and {key!r}, which are the same "
                f"accelerator type {name!r}; keep one", field=field, value=key)
        first[name] = key
        out[key] = name
    return out


def accelerator_type_of(node_resources: Mapping[str, float]) -> str | None:
    """The accelerator type a Ray node advertises, or None for a CPU-only node."""
    for key in node_resources:
        if key.startswith(ACCELERATOR_PREFIX):
            return key[len(ACCELERATOR_PREFIX):]
    return None


def bundle_fits(bundle: Mapping[str, float], free: Mapping[str, float]) -> bool:
    """Whether a Ray resource bundle fits into a node's free resources."""
    eps = 1e-9
    return all(free.get(key, 0.0) + eps >= amount for key, amount in bundle.items())
