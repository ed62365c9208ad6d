"""The meter as a named, detached Ray actor on the head node, so every driver meters into one
ledger and the ledger file lives where the head's disk is. Ray restarts it when it dies; its
constructor reopens the ledger and resumes every open meter from it."""

from __future__ import annotations

from typing import Any

import ray

from ainative.cost import meter as meter_mod
from ainative.policy import guardrails as g

ACTOR_NAME = "ainative-cost-meter"
NAMESPACE = "ainative"


class _MeterActor:
    def __init__(self, path: str | None, kwargs: dict[str, Any]) -> None:
        self.meter = meter_mod.Meter.open(path, **kwargs)

    def admit(self, spec: g.JobSpec) -> g.Decision:
        return self.meter.admit(spec)

    def start(self, spec: g.JobSpec) -> None:
        self.meter.start(spec)

    def poll(self, job: str, utilization: float | None, restarts: int | None) -> list[g.Decision]:
        return self.meter.poll(job, utilization=utilization, restarts=restarts)

    def finish(self, job: str, outcome: str) -> None:
        self.meter.finish(job, outcome)

    def running(self) -> list[str]:
        return self.meter.running()

    def spent(self, scope: str, since_s: float = 0.0) -> tuple[float, float]:
        return self.meter.spent(scope, since_s)

    def ledger_total_usd(self) -> float:
        return self.meter.ledger_total_usd()

    def pid(self) -> int:
        import os

        return os.getpid()


def start(path: str | None, kwargs: dict[str, Any], *, detached: bool = True) -> Any:
    """Create (or join) the meter actor; pinned to the head node by its built-in resource."""
    options: dict[str, Any] = {
        "name": ACTOR_NAME, "namespace": NAMESPACE, "get_if_exists": True, "num_cpus": 0,
        "max_restarts": -1, "max_concurrency": 1,
        "resources": {"node:__internal_head__": 0.001},
    }
    if detached:
        options["lifetime"] = "detached"
    return ray.remote(_MeterActor).options(**options).remote(path, kwargs)


class RemoteMeter:
    """The ``Meter`` interface over the actor; calls retry once across an actor restart."""

    def __init__(self, handle: Any, timeout_s: float = 30.0) -> None:
        self.handle, self.timeout_s = handle, timeout_s

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return ray.get(getattr(self.handle, method).remote(*args), timeout=self.timeout_s)
        except ray.exceptions.ActorUnavailableError:
            return ray.get(getattr(self.handle, method).remote(*args), timeout=self.timeout_s)

    def admit(self, spec: g.JobSpec) -> g.Decision:
        return self._call("admit", spec)  # type: ignore[no-any-return]

    def start(self, spec: g.JobSpec) -> None:
        self._call("start", spec)

    def poll(self, job: str, *, utilization: float | None = None,
             restarts: int | None = None) -> list[g.Decision]:
        return self._call("poll", job, utilization, restarts)  # type: ignore[no-any-return]

    def finish(self, job: str, outcome: str) -> None:
        self._call("finish", job, outcome)

    def running(self) -> list[str]:
        return self._call("running")  # type: ignore[no-any-return]

    def spent(self, scope: str, since_s: float = 0.0) -> tuple[float, float]:
        return self._call("spent", scope, since_s)  # type: ignore[no-any-return]

    def ledger_total_usd(self) -> float:
        return self._call("ledger_total_usd")  # type: ignore[no-any-return]

    def kill(self) -> None:
        ray.kill(self.handle, no_restart=True)
