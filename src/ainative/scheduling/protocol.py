"""The contract between job controllers (TrainJob, Endpoint) and admission (queues, quotas,
budgets, guardrails).

A controller asks for admission *before* it reserves a gang, keeps the lease while it runs, polls
it for a stop request (preemption, budget, max runtime, idle reclaim, crash loop) at least once per
second, and releases it with an outcome when it ends::

    admission = protocol.admission_for(queue)          # no scheduler configured -> ImmediateAdmission
    lease = admission.admit(protocol.JobRequest(...), timeout_s=None)   # blocks until admitted
    try:
        ...reserve the gang, run...
        stop = lease.poll(protocol.Usage(...))         # -> StopRequest | None
        if stop: checkpoint if stop.checkpoint, within stop.grace_s; end as f"stopped: {stop.reason}"
    finally:
        lease.release(outcome)                         # "succeeded" | "failed" | "stopped: <reason>"

Admission is an explicit, ordered chain of *layers*: each wraps the admission below it. With
nothing installed every job is admitted at once (``ImmediateAdmission``)::

    admission_for(queue) = cost guard (rank 200, ``ai.cost.enable``)
                             └ wraps scheduler (rank 100, ``ai.scheduling.configure``)
                                 └ wraps ImmediateAdmission (the base)

A layer is installed under a name (installing the same name again replaces it, uninstalling
removes only it) and applied by rank, lowest innermost, so ``cost.enable`` then
``scheduling.configure`` and the reverse build the same chain.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ainative import errors
from ainative import resources as res
from ainative.policy import admission as policy_admission

StopRequest = policy_admission.StopRequest
"""Re-exported: admission wants the job to stop (defined in ``ainative.policy.admission``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class JobRequest:
    """What a job asks admission for."""

    name: str
    kind: str                                   # "train" | "endpoint" | "gang"
    bundles: tuple[res.Resources, ...]
    strategy: str = "PACK"
    queue: str | None = None
    priority: int = 0
    preemptible: bool = True
    max_runtime_s: float | None = None
    expected_duration_s: float | None = None
    budget: Any = None                          # ainative Budget for this job, or None
    min_bundles: int | None = None              # elastic jobs: can start with this many
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    on_pending: Callable[[str], None] | None = dataclasses.field(default=None, compare=False)
    """Called with why the job waits, at once and on every change (e.g. the progress bar's
    ``pending: <why>``); admissions that never wait do not call it."""
    cancelled: Callable[[], bool] | None = dataclasses.field(default=None, compare=False)
    """True once the job was stopped while it waits (``TrainHandle.stop()``): admission takes it
    out of its queue and raises AdmissionError instead of admitting it later."""


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """What a running job reports at each poll."""

    bundles_in_use: int
    restarts: int = 0
    step: int | None = None
    accelerator_utilization: float | None = None   # 0-1, from the utilisation probe, if any


class Lease(Protocol):
    def poll(self, usage: Usage | None = None) -> StopRequest | None: ...

    def release(self, outcome: str) -> None: ...


def held_since(lease: Lease, fallback_s: float) -> float:
    """When ``lease`` began to hold its resources on the admitting side's clock (where its ledger
    charges begin), else ``fallback_s``. A caller learns of an admission a poll and a remote call
    after it happened (under a CPU hog, most of a second): its own clock would undercount."""
    value = getattr(lease, "admitted_s", None)
    return float(value) if isinstance(value, (int, float)) else fallback_s


def held_until(lease: Lease, fallback_s: float) -> float:
    """When ``lease``'s release took effect on the admitting side's clock (where its charges end),
    else ``fallback_s``; call it after ``release``."""
    value = getattr(lease, "released_s", None)
    return float(value) if isinstance(value, (int, float)) else fallback_s


class Admission(Protocol):
    def admit(self, request: JobRequest, timeout_s: float | None = None) -> Lease:
        """Block until admitted (``timeout_s`` None: no limit; else AdmissionTimeoutError), calling
        ``request.on_pending(why)`` at once and whenever the reason the job waits changes."""
        ...


class _ImmediateLease:
    def poll(self, usage: Usage | None = None) -> StopRequest | None:
        return None

    def release(self, outcome: str) -> None:
        return None


class ImmediateAdmission:
    """No scheduler configured: admit every job at once, never ask it to stop."""

    def admit(self, request: JobRequest, timeout_s: float | None = None) -> Lease:
        return _ImmediateLease()


SCHEDULER_RANK = 100
"""The scheduler layer: decides when a job runs (queues, quota, fair share, preemption)."""
COST_RANK = 200
"""The cost guard: refuses by budget before the job queues, meters it while it runs."""


@dataclasses.dataclass(frozen=True, slots=True)
class Layer:
    """One admission layer: ``wrap(inner, queue)`` returns the admission for ``queue`` built on
    ``inner`` (the layers of lower rank). A layer that decides on its own may ignore ``inner``."""

    name: str
    rank: int
    wrap: Callable[[Admission, str | None], Admission]


_LAYERS: dict[str, Layer] = {}
_LOCK = threading.Lock()


def install(layer: Layer) -> None:
    """Add ``layer`` to the chain (replacing the layer of the same name, if any)."""
    if not isinstance(layer, Layer):
        raise TypeError(f"install() takes a protocol.Layer, got {layer!r}")
    with _LOCK:
        _LAYERS[layer.name] = layer


def uninstall(name: str) -> Layer | None:
    """Remove the layer called ``name``; the others stay. Returns it (None: none was installed)."""
    with _LOCK:
        return _LAYERS.pop(name, None)


def layers() -> tuple[Layer, ...]:
    """The installed layers, innermost first."""
    with _LOCK:
        return tuple(sorted(_LAYERS.values(), key=lambda layer: (layer.rank, layer.name)))


def admission_for(queue: str | None) -> Admission:
    """The admission for a job on ``queue`` (None: the default queue): every installed layer, in
    rank order, over immediate admission."""
    admission: Admission = ImmediateAdmission()
    for layer in layers():
        admission = layer.wrap(admission, queue)
    return admission


def check_admission_timeout(timeout_s: float | None) -> float | None:
    """None (wait for ever) or a finite number of seconds > 0; ConfigError otherwise."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
            or not math.isfinite(timeout_s) or timeout_s <= 0:
        raise errors.ConfigError(f"admission_timeout_s must be a finite number of seconds > 0 (or None: "
                                 f"wait for ever), got {timeout_s!r}", field="admission_timeout_s",
                                 value=timeout_s)
    return float(timeout_s)
