"""``configure()``, ``status()``, ``why()`` and the scheduler-backed admission job controllers use.

``configure(queues)`` validates everything before touching Ray, then starts (or reconfigures) the
named detached scheduler actor and installs the "scheduler" layer of the admission chain in
``scheduling.protocol``, so ``protocol.admission_for(queue).admit(request)`` blocks until the
policy admits the job (other layers, such as ``ai.cost.enable``'s guard, keep wrapping it).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from ainative import errors
from ainative.cluster import background
from ainative.policy.admission import Guardrails
from ainative.policy.engine import PolicyConfig
from ainative.policy.queues import Queue, validate_queues
from ainative.scheduling import protocol
from ainative.scheduling.service import ACTOR_NAME, SchedulerService, state_path

_POLL_S = 0.2
HEARTBEAT_S = 1.0           # how often a lease tells the scheduler its driver is alive
_STATE: dict[str, Any] = {"prices": None, "actor": None}


def configure(queues: Sequence[Queue], prices: Any = None, *, policy: PolicyConfig | None = None,
              guardrails: Guardrails | None = None, fresh: bool = False,
              idle: Any = None, lease_timeout_s: float | None = None,
              reconcile_s: float = 1.0) -> None:
    """Start (or replace) the cluster's scheduler with these queues; jobs are then admitted by it.

    ``prices``: a PriceTable for the cost guardrails (stored); ``guardrails``: a Guardrails object
    consulted at admission and on every pass; ``fresh``: forget the persisted state; ``idle``: an
    IdlePolicy for jobs that bring none (idle reclaim from the utilisation their workers report);
    ``lease_timeout_s``: release a job whose lease went silent this long (its driver died; default
    30); ``reconcile_s``: seconds between reconciles with Ray's live state (0 < s <= 60)."""
    from ainative import config as cfgmod
    from ainative.policy import pricing

    queues = list(queues)
    validate_queues(queues)
    if policy is not None and not isinstance(policy, PolicyConfig):
        raise errors.ConfigError(f"policy must be an ainative.PolicyConfig, got {policy!r}",
                                 field="policy", value=policy)
    if idle is not None and not isinstance(idle, pricing.IdlePolicy):
        raise errors.ConfigError(f"configure(idle=...) must be an ainative.IdlePolicy, got {idle!r}",
                                 field="idle", value=idle)
    cfgmod.require_range("configure", "reconcile_s", reconcile_s, 0.05, 60.0)
    if lease_timeout_s is not None:
        cfgmod.require_range("configure", "lease_timeout_s", lease_timeout_s, 2.0, 86_400.0)
    needs_rails = prices is not None or idle is not None or any(q.budget is not None for q in queues)
    if guardrails is None and needs_rails:
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
    options = {"reconcile_s": reconcile_s, "lease_timeout_s": lease_timeout_s, "idle": idle}
    # On the head, like the cost meter: its state file and the ledger it meters into are files of
    # the node it runs on, so a restart elsewhere would lose both (tests/faults saw it land on a
    # worker node and restart on another).
    actor = remote.options(name=ACTOR_NAME, lifetime="detached", get_if_exists=False,
                           resources={"node:__internal_head__": 0.001}).remote(
        queues, cfg, path, guardrails, prices, options)
    for warning in ray.get(actor.status.remote())["warnings"]:    # e.g. quota for an absent type
        warnings.warn(warning, stacklevel=2)
    _STATE.update(prices=prices, actor=actor)
    protocol.install(protocol.Layer("scheduler", protocol.SCHEDULER_RANK, _admission))


def shutdown() -> None:
    """Stop the scheduler actor (its state file stays) and restore immediate admission."""
    import ray

    protocol.uninstall("scheduler")
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


def _gone() -> bool:
    """Whether no scheduler of that name exists (False when Ray cannot say)."""
    try:
        return _find_actor() is None
    except Exception:  # Ray itself failing: let the caller's deadline decide
        return False


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
    every method retried here is idempotent. An error the scheduler raises reaches the caller as
    itself (``AdmissionError``, ``UnknownQueueError``...), not wrapped in Ray's RayTaskError."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(getattr(actor, method).remote(*args))
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.RayActorError):
            # a restarting scheduler keeps its name; one shut down or out of restarts has none,
            # and waiting out the deadline for it only stalls the caller (an endpoint's delete()
            # after scheduling.shutdown() took 40 s)
            if time.monotonic() >= deadline or _gone():
                raise
            time.sleep(0.2)
        except ray.exceptions.RayTaskError as exc:
            raise unwrap(exc) from None


def unwrap(exc: BaseException) -> BaseException:
    """The ainative error a remote call raised, out of Ray's ``RayTaskError`` wrapper (whose class
    is a generated ``RayTaskError(AdmissionError)`` and whose message is a remote traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, errors.AinativeError):
        return cause
    if isinstance(exc, errors.AinativeError) and type(exc) in _ERROR_TYPES:
        return exc
    for base in type(exc).__mro__:         # RayTaskError(X): rebuild a plain X with its details
        if base in _ERROR_TYPES:
            msg = getattr(exc, "message", None) or str(exc)
            return base(msg, **dict(getattr(exc, "details", {}) or {}))
    return exc


def _error_types() -> set[type]:
    import inspect

    return {c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, errors.AinativeError)}


_ERROR_TYPES = _error_types()


def status() -> dict[str, Any]:
    """Queues with quota, usage, share, running jobs and pending jobs with why each waits."""
    return _call(_actor(), "status")


def why(job_id: str) -> str:
    return _call(_actor(), "why", job_id)


class SchedulerLease:
    """A job's hold on its admission: ``poll`` for stop requests, ``release`` with the outcome.
    A daemon thread heartbeats the scheduler about once a second (so a job whose driver dies is
    released after the lease timeout) and re-announces the job when a restarted scheduler does not
    know it."""

    def __init__(self, actor: Any, job_id: str, body: dict[str, Any] | None = None,
                 admitted_s: float | None = None) -> None:
        self.actor, self.job_id, self._released = actor, job_id, False
        self.admitted_s = admitted_s
        """When the scheduler admitted the job (its clock; where the job's charges begin)."""
        self.released_s: float | None = None
        """When the scheduler took the release (where the job's charges end)."""
        self._body = dict(body or {"job_id": job_id})
        self._body.setdefault("start_s", time.time() if admitted_s is None else admitted_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name=f"ainative-lease-{job_id}")
        background.register(self._stop, self._thread)
        self._thread.start()

    def _beat(self) -> None:
        import ray

        while not self._stop.wait(HEARTBEAT_S):
            if not ray.is_initialized():   # the driver shut Ray down: a call now ends the process
                return
            try:
                if not _call(self.actor, "heartbeat", self.job_id, timeout_s=10.0) \
                        and not self._stop.is_set() and "bundles" in self._body:
                    _call(self.actor, "announce", self._body, True, timeout_s=10.0)
            except Exception:  # the scheduler is restarting: try again next beat; gone: stop
                import ray

                if not ray.is_initialized() or _find_actor() is None:
                    return

    def poll(self, usage: protocol.Usage | None = None) -> protocol.StopRequest | None:
        seen = None if usage is None else {"restarts": usage.restarts,
                                            "utilization": usage.accelerator_utilization}
        got = _call(self.actor, "poll", self.job_id, seen)
        return None if got is None else protocol.StopRequest(**got)

    def release(self, outcome: str) -> None:
        if not self._released:
            self._released = True
            self._stop.set()
            ended = _call(self.actor, "release", self.job_id, outcome)
            # None from a scheduler that does not tell: protocol.held_until falls back then
            self.released_s = float(ended) if isinstance(ended, (int, float)) else None


class SchedulerAdmission:
    def __init__(self, queue: str | None) -> None:
        self.queue = queue

    def admit(self, request: protocol.JobRequest, timeout_s: float | None = None) -> protocol.Lease:
        """Block until the scheduler admits ``request``; AdmissionError when it can never run.
        ``request.metadata['submit_s']`` keeps a requeued job's age (its first submit time)."""
        timeout_s = protocol.check_admission_timeout(timeout_s)   # ConfigError before anything queues
        actor = _actor()
        job_id = f"{request.name}-{uuid.uuid4().hex[:6]}"
        body = {"job_id": job_id, "name": request.name, "kind": request.kind,
                "bundles": [b.to_bundle() for b in request.bundles], "strategy": request.strategy,
                "queue": request.queue or self.queue, "priority": request.priority,
                "preemptible": request.preemptible, "expected_duration_s": request.expected_duration_s,
                # read by the guardrails hook: per-job budget, TTL, idle policy, team
                "budget": request.budget, "max_runtime_s": request.max_runtime_s,
                "idle": request.metadata.get("idle"), "team": request.metadata.get("team"),
                "endpoint": request.metadata.get("endpoint"),
                "cpus": sum(b.cpus for b in request.bundles),
                "submit_s": request.metadata.get("submit_s") or time.time()}
        _call(actor, "submit", body)   # idempotent, retried over a restart; raises at once when it can never run
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        shown = None
        while True:
            try:
                ok, why, started_s = _call(actor, "admitted", job_id)
            except errors.AdmissionError:
                # a scheduler restarted from a stale or corrupt state file lost it: queue it again
                # (with its submit time); False: it had already ended, so this is a real error
                if not _call(actor, "announce", body, False):
                    raise
                continue
            if ok:
                return SchedulerLease(actor, job_id, body, admitted_s=started_s)
            if request.cancelled is not None and request.cancelled():
                _call(actor, "cancel", job_id)         # out of its queue: it never starts
                raise errors.AdmissionError(f"job {request.name!r} was stopped while it waited "
                                            "for admission", job_id=job_id, cancelled=True)
            reason = why.split("; ", 1)[-1] if why.startswith(f"{job_id}: pending") else why
            if reason != shown and request.on_pending is not None:
                shown = reason
                request.on_pending(reason)
            if deadline is not None and time.monotonic() >= deadline:
                _call(actor, "cancel", job_id)
                raise errors.AdmissionTimeoutError(
                    f"job {request.name!r} was not admitted within admission_timeout_s={timeout_s:g}: "
                    f"{reason}; raise admission_timeout_s, or free quota/budget", job_id=job_id,
                    reason=reason, timeout_s=timeout_s)
            time.sleep(_POLL_S)


def _admission(inner: protocol.Admission, queue: str | None) -> protocol.Admission:
    return SchedulerAdmission(queue)      # the scheduler decides on its own: ``inner`` is not asked

