"""A scripted stand-in for the KubeRay operator: moves ``status`` through realistic sequences.

Scenarios (pick one per object name with ``operator.script(name, scenario)``; the default is the
happy path of each kind). Steps are ``step_s`` apart and written like the operator writes them:
through the status subresource, bumping ``resourceVersion``, so watches see each one.

RayCluster: ``ready`` (head pending -> head ready -> provisioned), ``ready_legacy`` (no
Provisioned condition; ready workers reach desired), ``image_pull`` (head stuck in
ImagePullBackOff), ``replica_failure`` (worker pods forbidden by a quota), ``never_ready``.
RayJob: ``complete`` (Initializing -> Running -> jobStatus SUCCEEDED while still Running ->
Complete), ``failed``, ``validation_failed``, ``image_pull``, ``complete_then_deleted`` (TTL),
``stuck_initializing``, ``deleted_while_running``. RayService: ``ready``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.kuberay.fake_apiserver import Store, now

Status = dict[str, Any]
# A step returns the next status, or None to delete the object; the string "gate" waits until
# the test calls operator.release(name), so that a test can observe a state before the next.
Step = Callable[[dict[str, Any]], Status | None] | str


def cond(type_: str, status: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": "True" if status else "False", "reason": reason,
            "message": message, "lastTransitionTime": now()}


def _desired(spec: dict[str, Any]) -> int:
    return sum(int(g.get("replicas", 0)) for g in spec.get("workerGroupSpecs") or [])


def _cluster_status(obj: dict[str, Any], spec: dict[str, Any], stage: str) -> Status:
    name, gen = obj["metadata"]["name"], obj["metadata"].get("generation", 1)
    desired = _desired(spec)
    base: Status = {"desiredWorkerReplicas": desired, "readyWorkerReplicas": 0,
                    "availableWorkerReplicas": 0, "observedGeneration": gen, "state": ""}
    pending = cond("HeadPodReady", False, "ContainersNotReady",
                   "containers with unready status: [ray-head]")
    if stage == "pending":
        return {**base, "conditions": [pending]}
    if stage == "image_pull":
        return {**base, "conditions": [cond(
            "HeadPodReady", False, "ImagePullBackOff",
            'Back-off pulling image "rayproject/ray:does-not-exist": ErrImagePull: manifest '
            'unknown')]}
    if stage == "replica_failure":
        return {**base, "conditions": [pending, cond(
            "ReplicaFailure", True, "FailedCreateWorkerPod",
            f'pods "{name}-h100-worker-x7k2p" is forbidden: exceeded quota: gpu-quota, requested: '
            'nvidia.com/gpu=8, used: nvidia.com/gpu=0, limited: nvidia.com/gpu=4')]}
    head = {"podIP": "10.1.2.3", "serviceIP": "10.96.0.10", "serviceName": f"{name}-head-svc",
            "podName": f"{name}-head-abcde"}
    endpoints = {"client": "10001", "dashboard": "8265", "gcs-server": "6379", "metrics": "8080"}
    head_ready = cond("HeadPodReady", True, "HeadPodRunningAndReady")
    if stage == "head_ready":
        return {**base, "head": head, "endpoints": endpoints, "conditions": [
            head_ready, cond("RayClusterProvisioned", False, "RayClusterPodsProvisioning")]}
    ready = {**base, "head": head, "endpoints": endpoints, "readyWorkerReplicas": desired,
             "availableWorkerReplicas": desired, "state": "ready"}
    if stage == "ready_legacy":
        return {**ready, "conditions": [head_ready]}
    return {**ready, "conditions": [head_ready, cond(
        "RayClusterProvisioned", True, "AllPodRunningAndReadyFirstTime")]}


def _cluster_steps(stages: list[str]) -> list[Step]:
    return [lambda obj, s=stage: _cluster_status(obj, obj.get("spec") or {}, s) for stage in stages]


def _job(deployment: str, job: str = "", reason: str = "", message: str = "",
         cluster: str | None = None) -> Step:
    def step(obj: dict[str, Any]) -> Status:
        status: Status = {"jobDeploymentStatus": deployment, "jobId": f"{obj['metadata']['name']}-x1",
                          "rayClusterName": f"{obj['metadata']['name']}-raycluster-abc"}
        if job:
            status["jobStatus"] = job
        if reason:
            status["reason"] = reason
        if message:
            status["message"] = message
        if cluster:
            status["rayClusterStatus"] = _cluster_status(
                obj, obj["spec"].get("rayClusterSpec") or {}, cluster)
        return status
    return step


def _service(ready: bool) -> Step:
    def step(obj: dict[str, Any]) -> Status:
        if not ready:
            return {"conditions": [cond("Ready", False, "Initializing")], "numServeEndpoints": 0}
        return {"conditions": [cond("Ready", True, "NonZeroServeEndpoints")],
                "numServeEndpoints": 1, "serviceStatus": "Running"}
    return step


SCENARIOS: dict[str, dict[str, list[Step]]] = {
    "rayclusters": {
        "ready": _cluster_steps(["pending", "head_ready", "ready"]),
        "ready_legacy": _cluster_steps(["pending", "head_ready", "ready_legacy"]),
        "image_pull": _cluster_steps(["pending", "image_pull"]),
        "replica_failure": _cluster_steps(["pending", "replica_failure"]),
        "never_ready": _cluster_steps(["pending"]),
    },
    "rayjobs": {
        "complete": [_job("Initializing", cluster="pending"),
                     _job("Running", "PENDING", cluster="ready"),
                     _job("Running", "RUNNING", cluster="ready"),
                     _job("Running", "SUCCEEDED", cluster="ready"),  # jobStatus runs ahead
                     _job("Complete", "SUCCEEDED", cluster="ready")],
        "failed": [_job("Initializing", cluster="pending"), _job("Running", "RUNNING"),
                   _job("Failed", "FAILED", "AppFailed",
                        "Job entrypoint command failed with exit code 1")],
        "validation_failed": [_job("ValidationFailed", "", "ValidationFailed",
                                   "The RayJob spec is invalid: ...")],
        "image_pull": [_job("Initializing", cluster="pending"),
                       _job("Initializing", cluster="image_pull")],
        "complete_then_deleted": [_job("Running", "RUNNING"), _job("Complete", "SUCCEEDED"),
                                  "gate", lambda obj: None],
        "stuck_initializing": [_job("Initializing", cluster="pending")],
        # running for ~0.5 s (10 steps), so a client that creates companions first still sees it
        "deleted_while_running": [_job("Running", "RUNNING")] * 10 + [lambda obj: None],
    },
    "rayservices": {"ready": [_service(False), _service(False), _service(True)]},
}
DEFAULTS = {"rayclusters": "ready", "rayjobs": "complete", "rayservices": "ready"}


class FakeOperator:
    """Reacts to ADDED events of the store by playing the object's scenario in a thread."""

    def __init__(self, store: Store, *, step_s: float = 0.05) -> None:
        self.store, self.step_s = store, step_s
        self.scripts: dict[str, str] = {}
        self.gates: dict[str, threading.Event] = {}
        self._stop = threading.Event()
        store.listeners.append(self._on_event)

    def script(self, name: str, scenario: str) -> None:
        self.scripts[name] = scenario

    def release(self, name: str) -> None:
        self.gates.setdefault(name, threading.Event()).set()

    def stop(self) -> None:
        self._stop.set()

    def _on_event(self, event_type: str, plural: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if event_type == "MODIFIED" and plural == "rayclusters":
            observed = (obj.get("status") or {}).get("observedGeneration", 0)
            if obj["metadata"]["generation"] > observed:  # a spec change: reconcile it
                threading.Thread(target=self._play, args=(plural, obj, _cluster_steps(["ready"])),
                                 daemon=True, name=f"fake-operator-{name}").start()
            return
        if event_type != "ADDED" or plural not in SCENARIOS:
            return
        steps = SCENARIOS[plural][self.scripts.get(name, DEFAULTS[plural])]
        threading.Thread(target=self._play, args=(plural, obj, steps), daemon=True,
                         name=f"fake-operator-{name}").start()

    def _play(self, plural: str, obj: dict[str, Any], steps: list[Step]) -> None:
        meta = obj["metadata"]
        for step in steps:
            if isinstance(step, str):  # "gate"
                self.gates.setdefault(meta["name"], threading.Event()).wait(30)
                continue
            if self._stop.wait(self.step_s):
                return
            live = self.store.get(plural, meta["namespace"], meta["name"])
            if live is None or live["metadata"]["uid"] != meta["uid"]:
                return  # deleted (or replaced): the operator stops working on it
            status = step(live)
            if status is None:
                self.store.delete(plural, meta["namespace"], meta["name"])
                return
            self.store.set_status(plural, meta["namespace"], meta["name"], status)
