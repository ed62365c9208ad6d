"""Waiting on KubeRay objects by their conditions, with watches and a deadline that holds.

::

    get ──► verdict(obj) ──done──► return obj
     │         │ fatal ──► KubeRayError (HeadPodReady / ReplicaFailure message, as observed)
     │         ▼ not yet
     └── watch(resourceVersion, timeout = time left) ──► each event ──► verdict(obj) ...
                                         deadline passed ──► KubeRayTimeoutError(last status)

The verdicts are pure functions of one object, so they are tested on plain dicts. They never read
the deprecated ``status.state`` to decide anything (only to describe).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ainative import errors

logger = logging.getLogger(__name__)

# Waiting reasons of the head container that retrying will not fix on its own.
FATAL_POD_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                     "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError")
JOB_TERMINAL = ("Complete", "Failed", "ValidationFailed")


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What one observation of an object means for the waiter."""

    done: bool
    summary: str
    fatal: str | None = None


def conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in ((obj.get("status") or {}).get("conditions") or [])}


def _is_true(cond: Mapping[str, Any] | None) -> bool:
    return bool(cond) and cond.get("status") == "True"  # type: ignore[union-attr]


def _cond_text(cond: Mapping[str, Any] | None) -> str:
    if not cond:
        return "not reported yet"
    return f"{cond.get('status')} ({cond.get('reason', '')}: {cond.get('message', '')})"


def cluster_status_verdict(status: Mapping[str, Any], generation: int | None = None) -> Verdict:
    """Readiness of a RayCluster from its status: head ready, then provisioned (or enough workers)."""
    conds = {c.get("type", ""): c for c in (status.get("conditions") or [])}
    head, failure = conds.get("HeadPodReady"), conds.get("ReplicaFailure")
    ready = status.get("readyWorkerReplicas", 0) or 0
    desired = status.get("desiredWorkerReplicas", 0) or 0
    summary = (f"HeadPodReady={_cond_text(head)}; RayClusterProvisioned="
               f"{_cond_text(conds.get('RayClusterProvisioned'))}; workers ready {ready}/{desired}; "
               f"state={status.get('state', '')!r}")
    suspended = conds.get("RayClusterSuspended") or conds.get("RayClusterSuspending")
    if _is_true(suspended):
        # Kueue / Volcano hold a suspended cluster until its queue admits it
        summary += f"; suspended ({suspended.get('reason', '')}: waiting for queue admission?)"  # type: ignore[union-attr]
    if _is_true(failure):
        return Verdict(False, summary, f"ReplicaFailure ({failure.get('reason')}): "  # type: ignore[union-attr]
                                       f"{failure.get('message')}")  # type: ignore[union-attr]
    if head and not _is_true(head):
        text = f"{head.get('reason', '')} {head.get('message', '')}"
        if any(reason in text for reason in FATAL_POD_REASONS):
            return Verdict(False, summary, f"head pod not ready: {head.get('reason')}: "
                                           f"{head.get('message')}")
    observed = status.get("observedGeneration")
    fresh = generation is None or observed is None or observed >= generation
    provisioned = _is_true(conds.get("RayClusterProvisioned")) or (desired > 0 and ready >= desired)
    return Verdict(fresh and _is_true(head) and provisioned, summary)


def raycluster_verdict(obj: Mapping[str, Any]) -> Verdict:
    return cluster_status_verdict(obj.get("status") or {},
                                  (obj.get("metadata") or {}).get("generation"))


def rayjob_verdict(obj: Mapping[str, Any]) -> Verdict:
    """Terminal only on jobDeploymentStatus (jobStatus alone can run ahead of it)."""
    status = obj.get("status") or {}
    deployment = status.get("jobDeploymentStatus", "")
    summary = (f"jobDeploymentStatus={deployment!r} jobStatus={status.get('jobStatus', '')!r} "
               f"reason={status.get('reason', '')!r} message={status.get('message', '')!r}")
    if deployment in JOB_TERMINAL:
        return Verdict(True, summary)
    cluster = status.get("rayClusterStatus")
    if isinstance(cluster, Mapping):
        inner = cluster_status_verdict(cluster)
        summary += f"; cluster: {inner.summary}"
        if inner.fatal:
            return Verdict(False, summary, f"the job's cluster failed: {inner.fatal}")
    return Verdict(False, summary)


def rayservice_verdict(obj: Mapping[str, Any]) -> Verdict:
    status = obj.get("status") or {}
    ready = conditions(obj).get("Ready")
    endpoints = status.get("numServeEndpoints", 0) or 0
    summary = f"Ready={_cond_text(ready)}; serve endpoints {endpoints}"
    return Verdict(_is_true(ready) and endpoints > 0, summary)


VERDICTS: dict[str, Callable[[Mapping[str, Any]], Verdict]] = {
    "RayCluster": raycluster_verdict, "RayJob": rayjob_verdict, "RayService": rayservice_verdict}


def wait_for(client: Any, kind: str, namespace: str, name: str, timeout_s: float, *,
             tolerate_deleted: bool = False, last_seen: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """Watch ``name`` until its verdict is done; raise on a fatal verdict or at the deadline.

    ``tolerate_deleted``: a terminal object that is deleted (e.g. a RayJob's TTL) still counts as
    done, from the last state observed (the DELETED event carries it, or ``last_seen``)."""
    verdict_of = VERDICTS[kind]
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] | None = last_seen
    resume = True  # watch from the last resourceVersion; after a 410, from the current state
    reported = ""
    verdict = verdict_of(last) if last is not None else Verdict(False, "not observed yet")
    while True:
        obj = client.get(kind, namespace, name)
        if obj is None:
            if tolerate_deleted and last is not None and verdict.done:
                return last
            raise errors.KubeRayError(
                f"{kind} {namespace}/{name} does not exist (deleted while waiting?); last status: "
                f"{verdict.summary}", kind=kind, name=name, last_status=verdict.summary)
        last, verdict = obj, verdict_of(obj)
        while True:
            if verdict.summary != reported:  # log each transition once (CLI users see progress)
                logger.info("%s %s/%s: %s", kind, namespace, name, verdict.summary)
                reported = verdict.summary
            if verdict.fatal:
                raise errors.KubeRayError(f"{kind} {namespace}/{name}: {verdict.fatal} (status: "
                                          f"{verdict.summary})", kind=kind, name=name,
                                          last_status=verdict.summary, reason=verdict.fatal)
            if verdict.done:
                return last
            left = deadline - time.monotonic()
            if left <= 0:
                raise errors.KubeRayTimeoutError(
                    f"{kind} {namespace}/{name} not ready after {timeout_s:g} s; last status: "
                    f"{verdict.summary}. Raise timeout_s, or fix what the status says",
                    kind=kind, name=name, timeout_s=timeout_s, last_status=verdict.summary,
                    last_object=last)
            rv = (last.get("metadata") or {}).get("resourceVersion") if resume else None
            resume = True
            deleted, events, started = False, 0, time.monotonic()
            for event_type, event_obj in client.watch(kind, namespace, name, rv, left):
                events += 1
                if event_type == "GONE":  # history compacted: next watch starts from now
                    resume = False
                    break
                if event_type == "DELETED":
                    deleted = True
                    last, verdict = event_obj, verdict_of(event_obj)
                    break
                if event_type in ("ADDED", "MODIFIED"):
                    last, verdict = event_obj, verdict_of(event_obj)
                    if verdict.done or verdict.fatal:
                        break
            if deleted:
                if tolerate_deleted and verdict.done:
                    return last
                raise errors.KubeRayError(f"{kind} {namespace}/{name} was deleted while waiting; "
                                          f"last status: {verdict.summary}", kind=kind, name=name,
                                          last_status=verdict.summary)
            if not (verdict.done or verdict.fatal):
                if resume and events == 0 and time.monotonic() - started < 0.2:
                    # a watch that ends at once (410, dropped stream): do not spin on the server
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                break  # the watch ended (timeout, 410): re-read, then watch again
