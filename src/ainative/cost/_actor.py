"""The meter as a named, detached Ray actor on the head node, so every driver meters into one
ledger and the ledger file lives where the head's disk is. Ray restarts it when it dies; its
constructor reopens the ledger and resumes every open meter from it."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import ray

from ainative import errors
from ainative.cost import meter as meter_mod
from ainative.policy.cost import guardrails as g

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


def actor_name(path: str) -> str:
    """One meter actor per ledger file."""
    return f"{ACTOR_NAME}-{hashlib.sha1(path.encode()).hexdigest()[:10]}"


def start(path: str, kwargs: dict[str, Any], *, detached: bool = True) -> Any:
    """Create the meter actor for ``path``, replacing a running one (whose state is all in the
    ledger, so the new one resumes it with the new prices and budgets). Pinned to the head node by
    its built-in resource."""
    name = actor_name(path)
    try:
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
    except ValueError:
        pass                                   # none running
    options: dict[str, Any] = {
        "name": name, "namespace": NAMESPACE, "num_cpus": 0, "max_restarts": -1,
        "max_concurrency": 1, "resources": {"node:__internal_head__": 0.001},
    }
    if detached:
        options["lifetime"] = "detached"
    deadline = time.monotonic() + 30.0
    while True:                                # the killed actor's name is freed asynchronously
        try:
            handle = ray.remote(_MeterActor).options(**options).remote(path, kwargs)
            ray.get(handle.pid.remote(), timeout=60.0)  # type: ignore[union-attr]
            return handle
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class RemoteMeter:
    """The ``Meter`` interface over the actor; calls retry once across an actor restart."""

    def __init__(self, handle: Any, name: str, timeout_s: float = 30.0) -> None:
        self.handle, self.name, self.timeout_s = handle, name, timeout_s

    def _call(self, method: str, *args: Any) -> Any:
        # Every method is safe to repeat (a repeated poll charges ~0 s, a repeated finish finds
        # nothing open), so retry while the actor restarts or a newer enable() replaces it.
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return ray.get(getattr(self.handle, method).remote(*args), timeout=self.timeout_s)
            except ray.exceptions.ActorUnavailableError:
                pass                                     # restarting: Ray brings it back
            except ray.exceptions.ActorDiedError:
                self.handle = _lookup(self.name, max(0.1, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise errors.ClusterError(
                    f"cost meter actor {self.name!r} unavailable for {self.timeout_s:g} s; the "
                    "ledger keeps every charge so far", actor=self.name)
            time.sleep(0.1)

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

    def pid(self) -> int:
        return self._call("pid")  # type: ignore[no-any-return]

    def kill(self, *, restart: bool = False) -> None:
        """Kill the actor; with ``restart`` Ray brings it back and it resumes from the ledger."""
        ray.kill(self.handle, no_restart=not restart)


def _lookup(name: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
