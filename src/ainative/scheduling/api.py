"""``configure()``, ``status()``, ``why()`` and the scheduler-backed admission job controllers use.

``configure(queues)`` validates everything before touching Ray, then starts (or reconfigures) the
named detached scheduler actor and installs the admission factory in ``scheduling.protocol``, so
``protocol.admission_for(queue).admit(request)`` blocks until the policy admits the job.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from ainative import errors
from ainative.policy.admission import Guardrails
from ainative.policy.engine import PolicyConfig
from ainative.policy.queues import Queue, validate_queues
from ainative.scheduling import protocol
from ainative.scheduling.service import ACTOR_NAME, SchedulerService, state_path

_POLL_S = 0.2
_STATE: dict[str, Any] = {"prices": None, "actor": None}


def configure(queues: Sequence[Queue], prices: Any = None, *, policy: PolicyConfig | None = None,
              guardrails: Guardrails | None = None, fresh: bool = False) -> None:
    """Start (or replace) the cluster's scheduler with these queues; jobs are then admitted by it.

    ``prices``: a PriceTable for the cost guardrails (stored); ``guardrails``: a Guardrails object
    consulted at admission and on every pass; ``fresh``: forget the persisted state."""
    queues = list(queues)
    validate_queues(queues)
    if guardrails is None and (prices is not None or any(q.budget is not None for q in queues)):
        # Budgets and prices are enforced by the cost guardrails, metered into the spend ledger
        # ($AINATIVE_LEDGER, else ~/.ainative/ledger.sqlite); pass guardrails=... to choose.
        from ainative import cost

        guardrails = cost.scheduler_guardrails(queues, prices)
    cfg = dataclasses.replace(policy or PolicyConfig(), release_on_preempt=False)
    import os

    import ray

    if not ray.is_initialized():
        raise errors.ClusterError("connect first: ainative.connect() (or ray.init) before "
                                  "ainative.scheduling.configure(...)")
    namespace = ray.get_runtime_context().namespace
    path = state_path(namespace)
    if fresh and os.path.exists(path):
        os.remove(path)
    old = _find_actor()
    if old is not None:
        ray.kill(old, no_restart=True)
        _wait_gone()
    remote: Any = ray.remote(num_cpus=0, max_restarts=-1)(SchedulerService)  # type: ignore[call-overload]
    actor = remote.options(name=ACTOR_NAME, lifetime="detached", get_if_exists=False).remote(
        queues, cfg, path, guardrails, prices)
    for warning in ray.get(actor.status.remote())["warnings"]:    # e.g. quota for an absent type
        warnings.warn(warning, stacklevel=2)
    _STATE.update(prices=prices, actor=actor)
    protocol.set_admission_factory(_admission)


def shutdown() -> None:
    """Stop the scheduler actor (its state file stays) and restore immediate admission."""
    import ray

    protocol.set_admission_factory(None)
    if not ray.is_initialized():  # nothing to stop (and ray.get_actor would start a new Ray)
        _STATE.update(actor=None)
        return
    actor = _find_actor()
    if actor is not None:
        ray.kill(actor, no_restart=True)
        _wait_gone()
    _STATE.update(actor=None)


def prices() -> Any:
    return _STATE["prices"]


def _find_actor() -> Any:
    import ray

    try:
        return ray.get_actor(ACTOR_NAME)
    except ValueError:
        return None


def _wait_gone(timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _find_actor() is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def _actor() -> Any:
    actor = _find_actor()
    if actor is None:
        raise errors.SchedulingError(
            "no scheduler is running: call ainative.scheduling.configure([...]) first")
    return actor


def _call(actor: Any, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
    """Call the scheduler, riding over its restart (it restarts itself and reloads its state);
    every method retried here is idempotent."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(getattr(actor, method).remote(*args))
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def status() -> dict[str, Any]:
    """Queues with quota, usage, share, running jobs and pending jobs with why each waits."""
    return _call(_actor(), "status")


def why(job_id: str) -> str:
    return _call(_actor(), "why", job_id)


class SchedulerLease:
    def __init__(self, actor: Any, job_id: str) -> None:
        self.actor, self.job_id, self._released = actor, job_id, False

    def poll(self, usage: protocol.Usage | None = None) -> protocol.StopRequest | None:
        seen = None if usage is None else {"restarts": usage.restarts,
                                            "utilization": usage.accelerator_utilization}
        got = _call(self.actor, "poll", self.job_id, seen)
        return None if got is None else protocol.StopRequest(**got)

    def release(self, outcome: str) -> None:
        if not self._released:
            self._released = True
            _call(self.actor, "release", self.job_id, outcome)


class SchedulerAdmission:
    def __init__(self, queue: str | None) -> None:
        self.queue = queue

    def admit(self, request: protocol.JobRequest, timeout_s: float | None = None) -> protocol.Lease:
        """Block until the scheduler admits ``request``; AdmissionError when it can never run."""
        import ray

        actor = _actor()
        job_id = f"{request.name}-{uuid.uuid4().hex[:6]}"
        body = {"job_id": job_id, "name": request.name, "kind": request.kind,
                "bundles": [b.to_bundle() for b in request.bundles], "strategy": request.strategy,
                "queue": request.queue or self.queue, "priority": request.priority,
                "preemptible": request.preemptible, "expected_duration_s": request.expected_duration_s,
                # read by the guardrails hook: per-job budget, TTL, idle policy, team
                "budget": request.budget, "max_runtime_s": request.max_runtime_s,
                "idle": request.metadata.get("idle"), "team": request.metadata.get("team"),
                "cpus": sum(b.cpus for b in request.bundles)}
        ray.get(actor.submit.remote(body))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            ok, why = _call(actor, "admitted", job_id)
            if ok:
                return SchedulerLease(actor, job_id)
            if deadline is not None and time.monotonic() >= deadline:
                _call(actor, "cancel", job_id)
                raise errors.AdmissionError(f"not admitted within {timeout_s:g} s: {why}",
                                            job_id=job_id, reason=why)
            time.sleep(_POLL_S)


def _admission(queue: str | None) -> protocol.Admission:
    return SchedulerAdmission(queue)
