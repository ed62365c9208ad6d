"""up / down / submit / serve with the real kubernetes client against the fake API server and
the scripted operator: every scenario ends in the right result or typed error within its timeout."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import ainative as ai
from ainative import errors
from ainative.cluster import kuberay
from ainative.cluster.kuberay import manifests, ops, rbac
from ainative.cluster.kuberay.client import KubeRayClient
from tests.kuberay.fake_apiserver import FakeApiServer
from tests.kuberay.fake_operator import FakeOperator


def spec(name: str, **overrides: Any) -> ai.KubeRayClusterConfig:
    fields: dict[str, Any] = dict(
        name=name, namespace="ml",
        worker_groups=[ai.NodeGroupConfig(name="h100", accelerator=ai.Accelerator("H100", count=8),
                                          replicas=2, min_replicas=0, max_replicas=8),
                       ai.NodeGroupConfig(name="cpu", replicas=1)],
        autoscaling=True)
    fields.update(overrides)
    return ai.KubeRayClusterConfig(**fields)


def test_up_waits_for_head_then_provisioned(kube: KubeRayClient, unique_name: str) -> None:
    cluster = kuberay.up(spec(unique_name), timeout_s=10, client=kube)
    assert cluster.created
    conds = {c["type"]: c["status"] for c in cluster.status["conditions"]}
    assert conds == {"HeadPodReady": "True", "RayClusterProvisioned": "True"}
    assert cluster.address == f"ray://{unique_name}-head-svc.ml.svc:10001"
    assert cluster.dashboard_url == f"http://{unique_name}-head-svc.ml.svc:8265"
    from ainative.cluster import local

    assert local._resolve_address(cluster) == cluster.address  # what ai.connect(cluster) joins


def test_up_ready_by_worker_count_without_provisioned_condition(
        kube: KubeRayClient, operator: FakeOperator, unique_name: str) -> None:
    operator.script(unique_name, "ready_legacy")
    cluster = kuberay.up(spec(unique_name), timeout_s=10, client=kube)
    assert cluster.status["readyWorkerReplicas"] == 3


def test_image_pull_failure_fails_fast_with_the_reason(
        kube: KubeRayClient, operator: FakeOperator, unique_name: str) -> None:
    operator.script(unique_name, "image_pull")
    start = time.monotonic()
    with pytest.raises(errors.KubeRayError) as info:
        kuberay.up(spec(unique_name), timeout_s=30, client=kube)
    assert time.monotonic() - start < 5
    assert not isinstance(info.value, errors.KubeRayTimeoutError)
    assert "ImagePullBackOff" in str(info.value) and "does-not-exist" in str(info.value)
    # we created it and it failed: deleted before the error was raised
    assert "deleted the RayCluster we created" in str(info.value)
    assert kube.get("RayCluster", "ml", unique_name) is None


def test_failed_cluster_can_be_kept_and_adopted_ones_are_never_deleted(
        kube: KubeRayClient, operator: FakeOperator, unique_name: str) -> None:
    operator.script(unique_name, "replica_failure")
    with pytest.raises(errors.KubeRayError, match="ReplicaFailure") as info:
        kuberay.up(spec(unique_name), timeout_s=10, delete_on_failure=False, client=kube)
    assert "deleted" not in str(info.value)
    assert kube.get("RayCluster", "ml", unique_name) is not None  # kept for debugging
    with pytest.raises(errors.KubeRayError, match="ReplicaFailure"):
        kuberay.up(spec(unique_name), timeout_s=10, client=kube)  # adopted: not ours to delete
    assert kube.get("RayCluster", "ml", unique_name) is not None


def test_replica_failure_fails_fast(kube: KubeRayClient, operator: FakeOperator,
                                    unique_name: str) -> None:
    operator.script(unique_name, "replica_failure")
    with pytest.raises(errors.KubeRayError, match="ReplicaFailure.*exceeded quota"):
        kuberay.up(spec(unique_name), timeout_s=30, client=kube)


def test_timeout_holds_and_carries_the_last_status(
        kube: KubeRayClient, operator: FakeOperator, unique_name: str) -> None:
    operator.script(unique_name, "never_ready")
    start = time.monotonic()
    with pytest.raises(errors.KubeRayTimeoutError) as info:
        kuberay.up(spec(unique_name), timeout_s=1.0, client=kube)
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 5.0, elapsed  # the deadline holds (slack for a loaded machine)
    assert "ContainersNotReady" in info.value.last_status
    assert "timeout_s" in str(info.value)


def test_watch_recovers_from_410_gone(apiserver: FakeApiServer, kube: KubeRayClient,
                                      operator: FakeOperator, unique_name: str) -> None:
    operator.script(unique_name, "never_ready")
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(
        cluster=kuberay.up(spec(unique_name), timeout_s=8, client=kube)))
    worker.start()
    deadline = time.monotonic() + 5
    while (live := apiserver.store.get("rayclusters", "ml", unique_name)) is None or \
            not live.get("status"):  # created, and the operator has written its first status
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # let the waiter get into its watch
    gone_before = apiserver.store.gone_sent
    # end the open watch and forget history: the waiter's next watch from its rv gets 410 Gone
    apiserver.store.compact(close_watches=True)
    deadline = time.monotonic() + 5
    while apiserver.store.gone_sent == gone_before:
        assert time.monotonic() < deadline, "the waiter never re-watched from its old version"
        time.sleep(0.02)
    from tests.kuberay.fake_operator import _cluster_status

    apiserver.store.set_status("rayclusters", "ml", unique_name,
                               _cluster_status(live, live["spec"], "ready"))
    worker.join(10)
    assert result["cluster"].name == unique_name


def test_adopt_patches_only_our_fields(apiserver: FakeApiServer, kube: KubeRayClient,
                                       unique_name: str) -> None:
    first = kuberay.up(spec(unique_name), timeout_s=10, client=kube)
    assert first.created
    # the autoscaler scales the GPU group and marks a worker for deletion
    obj = kube.get("RayCluster", "ml", unique_name)
    assert obj is not None
    ops = [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 5},
           {"op": "add", "path": "/spec/workerGroupSpecs/0/scaleStrategy",
            "value": {"workersToDelete": ["w-1"]}}]
    kube.json_patch("RayCluster", "ml", unique_name, ops)
    again = kuberay.up(spec(unique_name), timeout_s=10, client=kube)
    assert not again.created
    generation = kube.get("RayCluster", "ml", unique_name)["metadata"]["generation"]  # type: ignore[index]
    changed = spec(unique_name, labels={"team": "a"}, worker_groups=[
        ai.NodeGroupConfig(name="h100", accelerator=ai.Accelerator("H100", count=8), replicas=2,
                           min_replicas=0, max_replicas=16),
        ai.NodeGroupConfig(name="cpu", replicas=1)])
    kuberay.up(changed, timeout_s=10, client=kube)
    live = kube.get("RayCluster", "ml", unique_name)
    assert live is not None
    h100 = live["spec"]["workerGroupSpecs"][0]
    assert h100["maxReplicas"] == 16 and live["metadata"]["labels"]["team"] == "a"
    assert h100["replicas"] == 5  # never fight the autoscaler
    assert h100["scaleStrategy"] == {"workersToDelete": ["w-1"]}
    assert live["metadata"]["generation"] == generation + 1


def test_same_name_other_owner_is_a_conflict(kube: KubeRayClient, unique_name: str) -> None:
    theirs = kuberay.raycluster_manifest(spec(unique_name, owner="someone-else"))
    kube.create(theirs)
    with pytest.raises(errors.KubeRayConflictError, match="not ours"):
        kuberay.up(spec(unique_name), timeout_s=5, client=kube)
    with pytest.raises(errors.KubeRayConflictError, match="not ours"):
        kuberay.down(unique_name, "ml", client=kube)
    live = kube.get("RayCluster", "ml", unique_name)
    assert live is not None and live["metadata"]["labels"][manifests.OWNER_LABEL] == "someone-else"
    assert kuberay.down(unique_name, "ml", force=True, client=kube, timeout_s=5)


def test_down_deletes_and_waits(kube: KubeRayClient, unique_name: str) -> None:
    kuberay.up(spec(unique_name), timeout_s=10, client=kube)
    assert kuberay.down(unique_name, namespace="ml", client=kube, timeout_s=5) is True
    assert kube.get("RayCluster", "ml", unique_name) is None
    assert kuberay.down(unique_name, namespace="ml", client=kube) is False


def job(name: str) -> dict[str, str]:
    return {"name": name, "entrypoint": "python train.py"}


def test_job_is_terminal_only_on_deployment_status(kube: KubeRayClient, unique_name: str) -> None:
    handle = kuberay.submit(job(unique_name), spec("c"), client=kube)
    status = handle.wait(timeout_s=10)
    # the scenario shows jobStatus SUCCEEDED while jobDeploymentStatus is still Running first
    assert (status.deployment_status, status.job_status) == ("Complete", "SUCCEEDED")
    assert status.succeeded


@pytest.mark.parametrize("scenario,deployment,job_status,reason", [
    ("failed", "Failed", "FAILED", "AppFailed"),
    ("validation_failed", "ValidationFailed", "", "ValidationFailed"),
])
def test_job_failures_report_status_reason_message(
        kube: KubeRayClient, operator: FakeOperator, unique_name: str, scenario: str,
        deployment: str, job_status: str, reason: str) -> None:
    operator.script(unique_name, scenario)
    status = kuberay.submit(job(unique_name), spec("c"), client=kube).wait(timeout_s=10)
    assert (status.deployment_status, status.job_status, status.reason) == (
        deployment, job_status, reason)
    assert status.message and not status.succeeded


def test_job_deleted_after_completion_is_tolerated(kube: KubeRayClient, operator: FakeOperator,
                                                   unique_name: str) -> None:
    operator.script(unique_name, "complete_then_deleted")
    handle = kuberay.submit(job(unique_name), spec("c"), client=kube)
    deadline = time.monotonic() + 10
    seen = None
    while time.monotonic() < deadline:  # a caller checking now and then sees Complete ...
        seen = handle.status()
        if seen is not None and seen.deployment_status == "Complete":
            break
        time.sleep(0.02)
    assert seen is not None and seen.deployment_status == "Complete"
    operator.release(unique_name)  # ... and then the TTL deletes the RayJob
    while kube.get("RayJob", "ml", unique_name) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kube.get("RayJob", "ml", unique_name) is None
    status = handle.wait(timeout_s=5)  # gone by now: the last observed terminal state counts
    assert (status.deployment_status, status.job_status) == ("Complete", "SUCCEEDED")
    # a handle that never saw the job cannot invent a result
    with pytest.raises(errors.KubeRayError, match="does not exist"):
        ops.KubeRayJob(unique_name, "ml", kube, created=False).wait(timeout_s=5)


def test_job_deleted_while_running_is_an_error(kube: KubeRayClient, operator: FakeOperator,
                                               unique_name: str) -> None:
    operator.script(unique_name, "deleted_while_running")
    with pytest.raises(errors.KubeRayError, match="deleted while waiting.*RUNNING"):
        kuberay.submit(job(unique_name), spec("c"), client=kube).wait(timeout_s=10)


def test_job_stuck_initializing_surfaces_the_hidden_error(
        kube: KubeRayClient, operator: FakeOperator, unique_name: str) -> None:
    operator.script(unique_name, "image_pull")
    with pytest.raises(errors.KubeRayError, match="ImagePullBackOff"):
        kuberay.submit(job(unique_name), spec("c"), client=kube).wait(timeout_s=10)


def test_job_timeout_shows_cluster_status(kube: KubeRayClient, operator: FakeOperator,
                                          unique_name: str) -> None:
    operator.script(unique_name, "stuck_initializing")
    with pytest.raises(errors.KubeRayTimeoutError, match="Initializing.*ContainersNotReady"):
        kuberay.submit(job(unique_name), spec("c"), client=kube).wait(timeout_s=0.8)


def test_resubmit_same_job_adopts_and_different_entrypoint_conflicts(
        kube: KubeRayClient, unique_name: str) -> None:
    first = kuberay.submit(job(unique_name), spec("c"), client=kube)
    second = kuberay.submit(job(unique_name), spec("c"), client=kube)
    assert first.created and not second.created
    with pytest.raises(errors.KubeRayConflictError, match="another payload"):
        kuberay.submit({"name": unique_name, "entrypoint": "python other.py"}, spec("c"),
                       client=kube)


def test_serve_waits_for_ready_and_endpoints(kube: KubeRayClient, unique_name: str) -> None:
    svc = kuberay.serve({"name": unique_name, "route": "/v1", "import_path": "app:build"},
                        spec("c"), timeout_s=10, client=kube)
    assert svc.status["numServeEndpoints"] == 1 and svc.created
    assert svc.url == f"http://{unique_name}-serve-svc.ml.svc:8000/v1"


def test_server_side_422_is_typed_with_the_path(kube: KubeRayClient, unique_name: str) -> None:
    m = kuberay.raycluster_manifest(spec(unique_name))
    m["spec"]["workerGroupSpecs"][0]["replicas"] = "two"  # bypassing our own validation
    with pytest.raises(errors.KubeRayValidationError) as info:
        kube.create(m)
    assert info.value.status == 422
    assert info.value.path == "spec.workerGroupSpecs[0].replicas"


def test_operator_not_installed() -> None:
    server = FakeApiServer(installed=()).start()
    try:
        client = KubeRayClient(server.api_client())
        with pytest.raises(errors.KubeRayNotInstalledError, match="operator.*not installed"):
            kuberay.up(spec("x"), timeout_s=5, client=client)
        with pytest.raises(errors.KubeRayNotInstalledError):
            client.get("RayJob", "ml", "x")
    finally:
        server.stop()


def test_unreachable_api_server_is_typed() -> None:
    from kubernetes import client as k8s

    cfg = k8s.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: nothing listens
    cfg.retries = False
    with pytest.raises(errors.KubeRayError, match="cannot reach"):
        KubeRayClient(k8s.ApiClient(cfg), request_timeout_s=2).get("RayCluster", "ml", "x")


readonly = [{"apiGroups": ["ray.io"], "resources": list(rbac.RESOURCES),
             "verbs": ["get", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]


@pytest.fixture(scope="module")
def rbac_server():
    server = FakeApiServer(tokens={"least": rbac.RULES, "readonly": readonly}).start()
    # slow enough that every wait starts before the object is ready (so it has to watch)
    operator = FakeOperator(server.store, step_s=0.2)
    yield server
    operator.stop()
    server.stop()


def test_least_privilege_role_is_enough_and_respected(rbac_server: FakeApiServer) -> None:
    client = KubeRayClient(rbac_server.api_client("least"))
    rbac_server.requests.clear()
    kuberay.up(spec("rbac"), timeout_s=10, client=client)
    kuberay.up(spec("rbac"), timeout_s=10, client=client)  # adopt
    kuberay.up(spec("rbac", labels={"x": "y"}), timeout_s=10, client=client)  # adopt + patch
    kuberay.submit(job("rbac-job"), spec("rbac"), client=client).wait(timeout_s=10)
    kuberay.serve({"name": "rbac-svc", "import_path": "a:b"}, spec("rbac"), timeout_s=10,
                  client=client)
    for kind, name in (("RayCluster", "rbac"), ("RayJob", "rbac-job"), ("RayService", "rbac-svc")):
        assert kuberay.down(name, "ml", kind=kind, client=client, timeout_s=5)
    used = set(rbac_server.requests)
    assert all(rbac.allows(verb, resource) for verb, resource in used), used
    assert {verb for verb, _ in used} == set(rbac.VERBS)  # and every verb of the Role is needed


def test_403_names_the_rbac_verbs_needed(rbac_server: FakeApiServer) -> None:
    client = KubeRayClient(rbac_server.api_client("readonly"))
    with pytest.raises(errors.KubeRayAuthError) as info:
        kuberay.up(spec("denied"), timeout_s=5, client=client)
    assert info.value.status == 403
    assert "'create' on rayclusters.ray.io in namespace 'ml'" in str(info.value)
    assert "role_manifest" in str(info.value)


def test_401_without_credentials(rbac_server: FakeApiServer) -> None:
    client = KubeRayClient(rbac_server.api_client("wrong-token"))
    with pytest.raises(errors.KubeRayAuthError, match="not authenticated"):
        client.get("RayCluster", "ml", "x")


def test_errors_survive_pickling() -> None:
    import pickle

    err = errors.KubeRayTimeoutError("late", last_status="HeadPodReady=False", timeout_s=1.0)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is errors.KubeRayTimeoutError and back.last_status == "HeadPodReady=False"


def test_port_forward_with_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   kube: KubeRayClient, unique_name: str) -> None:
    fake = tmp_path / "kubectl"
    fake.write_text("#!/bin/sh\n"
                    "echo \"$@\" > \"$(dirname \"$0\")/argv\"\n"
                    "for m in \"$@\"; do case \"$m\" in *:*) l=${m%%:*}; r=${m##*:};"
                    " echo \"Forwarding from 127.0.0.1:$l -> $r\";; esac; done\n"
                    "exec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cluster = kuberay.up(spec(unique_name), timeout_s=10, client=kube)
    with cluster.port_forward(timeout_s=10) as forward:
        assert forward.address.startswith("ray://127.0.0.1:")
        assert forward.dashboard_url.startswith("http://127.0.0.1:")
        argv = (tmp_path / "argv").read_text()
        assert f"svc/{unique_name}-head-svc" in argv and ":10001" in argv and "-n ml" in argv
    assert forward.process.poll() is not None  # stopped on exit


def test_packaged_schemas_match_the_shared_crds() -> None:
    import json

    import yaml

    from ainative.cluster.kuberay import schema

    # ../shared beside the checkout (as CI lays it out), else this workplace's copy
    candidates = [Path(__file__).resolve().parents[3] / "shared" / "kuberay-crds", Path("/work/shared/kuberay-crds")]
    source = next((c for c in candidates if c.is_dir()), None)
    if source is None:
        pytest.skip("the CRD source folder ../shared/kuberay-crds is not beside this checkout "
                    "(provenance: crds/SOURCE.md)")
    for kind, plural in schema.PLURALS.items():
        crd = yaml.load((source / f"ray.io_{plural}.yaml").read_text(), Loader=yaml.CSafeLoader)
        (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        assert json.loads(json.dumps(v1["schema"]["openAPIV3Schema"])) == schema.crd_schema(kind)
