"""Opt-in: a real Kubernetes cluster with the KubeRay operator (``pytest --kuberay-live``).

Uses the current kubeconfig context and the namespace in AINATIVE_KUBERAY_NAMESPACE (default
``default``). Creates a small CPU-only RayCluster and a RayJob, waits for both, deletes both.
See docs/kuberay.md for a kind + helm recipe.
"""

from __future__ import annotations

import os
import uuid

import pytest

import ainative as ai
from ainative.cluster import kuberay

pytestmark = pytest.mark.kuberay_live
NAMESPACE = os.environ.get("AINATIVE_KUBERAY_NAMESPACE", "default")
IMAGE = os.environ.get("AINATIVE_KUBERAY_IMAGE", "rayproject/ray:2.60.0-py311")


def small_cluster(name: str) -> ai.KubeRayClusterConfig:
    return ai.KubeRayClusterConfig(
        name=name, namespace=NAMESPACE, image=IMAGE, ray_version="2.60.0",
        head=ai.NodeGroupConfig(name="head", cpus=1, memory="3Gi"),
        worker_groups=[ai.NodeGroupConfig(name="cpu", cpus=1, memory="2Gi", replicas=1)])


def test_live_up_adopt_down() -> None:
    name = f"ainative-live-{uuid.uuid4().hex[:6]}"
    spec = small_cluster(name)
    try:
        cluster = kuberay.up(spec, timeout_s=600)
        assert cluster.created and cluster.address.startswith("ray://")
        assert cluster.head_service and cluster.endpoints.get("client")
        again = kuberay.up(spec, timeout_s=120)
        assert not again.created
    finally:
        kuberay.down(name, NAMESPACE, timeout_s=300)


def test_live_rayjob_completes() -> None:
    name = f"ainative-job-{uuid.uuid4().hex[:6]}"
    job = {"name": name, "entrypoint":
           "python -c \"import ray; ray.init(); print(ray.cluster_resources())\""}
    handle = kuberay.submit(job, small_cluster("unused"), ttl_after_finished_s=60)
    try:
        status = handle.wait(timeout_s=900)
        assert status.succeeded, status
    finally:
        kuberay.down(name, NAMESPACE, kind="RayJob", timeout_s=300)
