"""Manifests and validation: pure functions, no API server, no Ray."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

import ainative as ai
from ainative import errors
from ainative.cluster import kuberay
from ainative.cluster.kuberay import manifests, naming, schema


def research(**overrides: Any) -> ai.KubeRayClusterConfig:
    fields: dict[str, Any] = dict(
        name="research", namespace="ml", ray_version="2.60.0",
        image="rayproject/ray:2.60.0-py311-gpu",
        head=ai.NodeGroupConfig(cpus=4, memory="16Gi"),
        worker_groups=[ai.NodeGroupConfig(name="h100", accelerator=ai.Accelerator("H100", count=8),
                                          cpus=96, memory="1Ti", replicas=2, min_replicas=0,
                                          max_replicas=8),
                       ai.NodeGroupConfig(name="cpu", cpus=16, memory="64Gi", replicas=1)],
        autoscaling=True, gang_scheduler="kueue", queue="team-a")
    fields.update(overrides)
    return ai.KubeRayClusterConfig(**fields)


def groups(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in manifest["spec"]["workerGroupSpecs"]}


def test_issue_example_validates_and_keeps_every_worker_group() -> None:
    m = kuberay.raycluster_manifest(research())
    assert m["apiVersion"] == "ray.io/v1" and m["kind"] == "RayCluster"
    assert list(groups(m)) == ["h100", "cpu"]  # the KubeRay client keeps only the last one
    h100 = groups(m)["h100"]
    container = h100["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["resources"]["requests"] == container["resources"]["limits"]
    # declared Ray resources let the autoscaler scale this group up from zero
    assert h100["resources"] == {"GPU": "8", "accelerator_type:H100": "1"}
    assert (h100["minReplicas"], h100["replicas"], h100["maxReplicas"]) == (0, 2, 8)
    assert h100["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert h100["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    cpu = groups(m)["cpu"]
    assert "resources" not in cpu and "nodeSelector" not in cpu["template"]["spec"]
    assert m["spec"]["enableInTreeAutoscaling"] is True
    assert m["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] == 60


def test_ray_start_params_are_all_strings() -> None:
    spec = research(head=ai.NodeGroupConfig(cpus=2, ray_start_params={"num-cpus": "0"}))
    m = kuberay.raycluster_manifest(spec)
    every = [m["spec"]["headGroupSpec"]["rayStartParams"]] + [
        g["rayStartParams"] for g in m["spec"]["workerGroupSpecs"]]
    assert all(isinstance(v, str) for params in every for v in params.values())
    with pytest.raises(errors.ConfigError, match="ray_start_params"):
        ai.NodeGroupConfig(ray_start_params={"num-cpus": 0})  # type: ignore[dict-item]


def test_several_gpu_types_each_route_by_type() -> None:
    spec = research(worker_groups=[
        ai.NodeGroupConfig(name="h100", accelerator=ai.Accelerator("H100", count=8), replicas=1),
        ai.NodeGroupConfig(name="l4", accelerator=ai.Accelerator("nvidia-l4", count=1), replicas=0,
                           max_replicas=4),
        ai.NodeGroupConfig(name="mi300", accelerator=ai.Accelerator("MI300X", count=8), replicas=0,
                           max_replicas=2, node_selector={"pool": "amd"}),
    ])
    g = groups(kuberay.raycluster_manifest(spec))
    assert g["l4"]["resources"] == {"GPU": "1", "accelerator_type:L4": "1"}
    assert g["l4"]["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    mi = g["mi300"]["template"]["spec"]
    assert mi["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "8"
    assert mi["nodeSelector"] == {"pool": "amd"}  # overridden
    assert mi["tolerations"][0]["key"] == "amd.com/gpu"


def test_ray_autoscaler_sees_gpu_groups_at_zero_replicas() -> None:
    """Ray's own KubeRay autoscaler code reads what a group offers before any pod exists."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _get_ray_resources_from_group_spec,
    )

    spec = research(worker_groups=[
        ai.NodeGroupConfig(name="h100", accelerator=ai.Accelerator("H100", count=8), cpus=96,
                           memory="1Ti", replicas=0, max_replicas=4),
        ai.NodeGroupConfig(name="v4", accelerator=ai.Accelerator("TPU-V4", count=4), cpus=8,
                           replicas=0, max_replicas=2, node_selector={
                               "cloud.google.com/gke-tpu-accelerator": "tpu-v4-podslice",
                               "cloud.google.com/gke-tpu-topology": "2x2x1"})])
    g = groups(kuberay.raycluster_manifest(spec))
    assert _get_ray_resources_from_group_spec(g["h100"], False) == {
        "CPU": 96, "GPU": 8, "memory": 2**40, "accelerator_type:H100": 1}
    tpu = _get_ray_resources_from_group_spec(g["v4"], False)
    assert tpu["TPU"] == 4 and tpu["accelerator_type:TPU-V4"] == 1
    with pytest.raises(errors.ConfigError, match="gke-tpu-topology"):
        kuberay.raycluster_manifest(research(worker_groups=[ai.NodeGroupConfig(
            name="v4", accelerator=ai.Accelerator("TPU-V4", count=4))]))


def test_node_selector_and_tolerations_can_be_disabled() -> None:
    spec = research(worker_groups=[ai.NodeGroupConfig(
        name="h100", accelerator=ai.Accelerator("H100"), node_selector={}, tolerations=[])])
    pod = groups(kuberay.raycluster_manifest(spec))["h100"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


@pytest.mark.parametrize("scheduler,expected", [
    ("kueue", {"kueue.x-k8s.io/queue-name": "team-a"}),
    ("volcano", {"volcano.sh/queue-name": "team-a"}),
    ("yunikorn", {"yunikorn.apache.org/queue": "team-a", "ray.io/gang-scheduling-enabled": "true"}),
])
def test_gang_scheduler_labels(scheduler: str, expected: dict[str, str]) -> None:
    spec = research(gang_scheduler=scheduler)
    for m in (kuberay.raycluster_manifest(spec),
              kuberay.rayjob_manifest({"name": "job", "entrypoint": "python t.py"}, spec)):
        labels = m["metadata"]["labels"]
        assert {k: labels[k] for k in expected} == expected
        assert "ray.io/scheduler-name" not in json.dumps(m)  # obsolete label, never emitted
        others = set().union(*manifests.GANG_LABELS.values()) - set(expected)
        assert not others & set(labels)


def test_kueue_rayjob_shuts_the_cluster_down() -> None:
    job = kuberay.rayjob_manifest({"name": "job", "entrypoint": "python t.py"}, research())
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"] == "h100"


def test_gang_scheduler_needs_a_queue() -> None:
    with pytest.raises(errors.ConfigError, match="queue"):
        research(queue=None)
    with pytest.raises(errors.ConfigError, match="gang_scheduler"):
        research(gang_scheduler="slurm")


class _Job:
    def __init__(self, name: str, **attrs: Any) -> None:
        self.name = name
        for key, value in attrs.items():
            setattr(self, key, value)


@pytest.mark.parametrize("job,expected", [
    (_Job("a", entrypoint="python train.py --epochs 3"), "python train.py --epochs 3"),
    ({"name": "b", "entrypoint": "pkg.train:main"},
     """python -c 'import importlib; importlib.import_module("pkg.train").main()'"""),
    (_Job("c", train_fn=json.dumps),
     """python -c 'import importlib; importlib.import_module("json").dumps()'"""),
    ({"name": "d", "spec": "jobs/train.yaml"}, "python -m ainative.cli.main apply jobs/train.yaml"),
])
def test_rayjob_entrypoint_forms(job: Any, expected: str) -> None:
    m = kuberay.rayjob_manifest(job, research(), runtime_env={"pip": ["torch"]},
                                active_deadline_s=3600)
    assert m["spec"]["entrypoint"] == expected
    assert yaml.safe_load(m["spec"]["runtimeEnvYAML"]) == {"pip": ["torch"]}
    assert m["spec"]["activeDeadlineSeconds"] == 3600


def test_module_function_entrypoint_really_runs(tmp_path: Any) -> None:
    (tmp_path / "mymod.py").write_text("def main():\n    print('trained')\n")
    _, command = manifests.job_entrypoint({"name": "x", "entrypoint": "mymod:main"})
    out = subprocess.run(command.replace("python", sys.executable, 1), shell=True, cwd=tmp_path,
                         capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "trained"


def test_train_job_from_main_is_refused() -> None:
    def local_fn() -> None:
        pass

    with pytest.raises(errors.ConfigError, match="cannot import"):
        kuberay.rayjob_manifest(_Job("x", train_fn=local_fn), research())


def test_rayjob_on_existing_cluster() -> None:
    m = kuberay.rayjob_manifest({"name": "j", "entrypoint": "python t.py"}, research(),
                                cluster_selector={"ray.io/cluster": "research"})
    assert m["spec"]["clusterSelector"] == {"ray.io/cluster": "research"}
    assert "rayClusterSpec" not in m["spec"] and "shutdownAfterJobFinishes" not in m["spec"]


def test_rayservice_serve_config() -> None:
    endpoint = _Job("llm", route="/v1/chat", import_path="mypkg.serve:app")
    m = kuberay.rayservice_manifest(endpoint, research())
    config = yaml.safe_load(m["spec"]["serveConfigV2"])
    assert config == {"applications": [
        {"name": "llm", "route_prefix": "/v1/chat", "import_path": "mypkg.serve:app"}]}
    assert m["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"]
    with pytest.raises(errors.ConfigError, match="import_path"):
        kuberay.rayservice_manifest(_Job("llm"), research())


def test_config_from_yaml_mapping() -> None:
    data = yaml.safe_load("""
name: research
namespace: ml
worker_groups:
  - {name: h100, accelerator: {type: H100, count: 8}, replicas: 0, max_replicas: 4}
""")
    spec = ai.KubeRayClusterConfig.from_dict(data)
    assert spec.worker_groups[0].accelerator == ai.Accelerator("H100", count=8)
    with pytest.raises(errors.ConfigError, match="no field"):
        ai.KubeRayClusterConfig.from_dict({"name": "x", "workers": []})


@pytest.mark.parametrize("kwargs,field", [
    (dict(name="Research"), "name"), (dict(name="a" * 54), "name"), (dict(name="1abc"), "name"),
    (dict(namespace="ML"), "namespace"), (dict(idle_timeout_s=0), "idle_timeout_s"),
])
def test_cluster_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        research(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("kwargs,field", [
    (dict(name="H100"), "name"), (dict(memory="16GB"), "memory"), (dict(cpus=0), "cpus"),
    (dict(replicas=3, max_replicas=2), "replicas"), (dict(replicas=-1), "replicas"),
    (dict(accelerator=ai.Accelerator("H100", count=0.5)), "accelerator"),
])
def test_node_group_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        ai.NodeGroupConfig(**kwargs)
    assert info.value.field == field


# --- validation of hand-written / edited manifests ------------------------------------------


@pytest.fixture
def cluster() -> dict[str, Any]:
    return copy.deepcopy(kuberay.raycluster_manifest(research()))


@pytest.fixture
def job() -> dict[str, Any]:
    return copy.deepcopy(kuberay.rayjob_manifest({"name": "job", "entrypoint": "python t.py"},
                                                 research()))


def bad(manifest: dict[str, Any], path: str) -> errors.KubeRayValidationError:
    with pytest.raises(errors.KubeRayValidationError) as info:
        kuberay.validate(manifest)
    assert info.value.path == path, info.value.message
    assert path in str(info.value)
    return info.value


def test_validate_fills_schema_defaults(cluster: dict[str, Any]) -> None:
    del cluster["spec"]["workerGroupSpecs"][1]["replicas"]
    del cluster["spec"]["workerGroupSpecs"][1]["maxReplicas"]
    filled = kuberay.validate(cluster)
    assert filled["spec"]["workerGroupSpecs"][1]["replicas"] == 0  # CRD default
    assert filled["spec"]["workerGroupSpecs"][1]["maxReplicas"] == 2147483647
    assert "replicas" not in cluster["spec"]["workerGroupSpecs"][1]  # input untouched


def test_schema_type_error_names_the_path(cluster: dict[str, Any]) -> None:
    cluster["spec"]["workerGroupSpecs"][0]["minReplicas"] = "zero"
    bad(cluster, "spec.workerGroupSpecs[0].minReplicas")


def test_schema_rayStartParams_must_be_strings(cluster: dict[str, Any]) -> None:
    cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    bad(cluster, "spec.headGroupSpec.rayStartParams.num-cpus")


def test_schema_required_field(cluster: dict[str, Any]) -> None:
    del cluster["spec"]["workerGroupSpecs"][0]["groupName"]
    err = bad(cluster, "spec.workerGroupSpecs[0]")
    assert "groupName" in str(err)


def test_unknown_field_is_reported_not_dropped(cluster: dict[str, Any]) -> None:
    cluster["spec"]["workerGroupSpecs"][0]["minReplica"] = 1
    bad(cluster, "spec.workerGroupSpecs[0].minReplica")


def test_wrong_api_version(cluster: dict[str, Any]) -> None:
    cluster["apiVersion"] = "ray.io/v1alpha1"
    bad(cluster, "apiVersion")


# operator rules: one failing case each


def test_rule_cluster_name_length_and_dns(cluster: dict[str, Any]) -> None:
    cluster["metadata"]["name"] = "r" * 54
    bad(cluster, "metadata.name")
    cluster["metadata"]["name"] = "my_cluster"
    bad(cluster, "metadata.name")
    cluster["metadata"]["name"] = "r" * 53
    kuberay.validate(cluster)


def test_rule_job_and_service_names_at_most_47(job: dict[str, Any]) -> None:
    job["metadata"]["name"] = "j" * 48
    bad(job, "metadata.name")
    job["metadata"]["name"] = "j" * 47
    kuberay.validate(job)


def test_rule_at_least_one_container(cluster: dict[str, Any]) -> None:
    cluster["spec"]["workerGroupSpecs"][1]["template"]["spec"]["containers"] = []
    bad(cluster, "spec.workerGroupSpecs[1].template.spec.containers")


def test_rule_min_not_above_max(cluster: dict[str, Any]) -> None:
    cluster["spec"]["workerGroupSpecs"][0]["minReplicas"] = 9
    bad(cluster, "spec.workerGroupSpecs[0].minReplicas")


def test_rule_resources_not_in_both_places(cluster: dict[str, Any]) -> None:
    cluster["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = "8"
    bad(cluster, "spec.workerGroupSpecs[0].resources")


def test_rule_no_labels_in_ray_start_params(cluster: dict[str, Any]) -> None:
    cluster["spec"]["headGroupSpec"]["rayStartParams"]["labels"] = "a=b"
    bad(cluster, "spec.headGroupSpec.rayStartParams.labels")


def test_verdicts_wait_for_the_operator_to_see_a_new_generation() -> None:
    from ainative.cluster.kuberay import wait

    ready = {"conditions": [{"type": "HeadPodReady", "status": "True"},
                            {"type": "RayClusterProvisioned", "status": "True"}],
             "observedGeneration": 1}
    assert wait.cluster_status_verdict(ready, generation=1).done
    assert not wait.cluster_status_verdict(ready, generation=2).done  # stale after our patch
    # deprecated status.state alone never means ready
    assert not wait.cluster_status_verdict({"state": "ready"}).done
    job = {"status": {"jobDeploymentStatus": "Running", "jobStatus": "SUCCEEDED"}}
    assert not wait.rayjob_verdict(job).done
    queued = {"conditions": [{"type": "RayClusterSuspended", "status": "True",
                              "reason": "RayClusterSuspended"}]}
    verdict = wait.cluster_status_verdict(queued)
    assert not verdict.done and "waiting for queue admission" in verdict.summary


def test_rule_unique_group_names(cluster: dict[str, Any]) -> None:
    cluster["spec"]["workerGroupSpecs"][1]["groupName"] = "h100"
    bad(cluster, "spec.workerGroupSpecs[1].groupName")


def test_rule_suspend_needs_shutdown(job: dict[str, Any]) -> None:
    job["spec"]["suspend"] = True
    job["spec"]["shutdownAfterJobFinishes"] = False
    bad(job, "spec.suspend")


def test_rule_exactly_one_cluster_source(job: dict[str, Any]) -> None:
    job["spec"]["clusterSelector"] = {"ray.io/cluster": "x"}
    bad(job, "spec.rayClusterSpec")
    del job["spec"]["clusterSelector"], job["spec"]["rayClusterSpec"]
    bad(job, "spec.rayClusterSpec")


def test_rule_positive_deadlines(job: dict[str, Any]) -> None:
    job["spec"]["activeDeadlineSeconds"] = 0
    bad(job, "spec.activeDeadlineSeconds")
    job["spec"]["activeDeadlineSeconds"] = 10
    job["spec"]["preRunningDeadlineSeconds"] = -5
    bad(job, "spec.preRunningDeadlineSeconds")


def test_rule_rayjob_needs_an_entrypoint(job: dict[str, Any]) -> None:
    job["spec"]["entrypoint"] = "  "
    bad(job, "spec.entrypoint")


def test_rule_rayservice_serve_config() -> None:
    svc = kuberay.rayservice_manifest({"name": "llm", "import_path": "a:b"}, research())
    svc["spec"]["serveConfigV2"] = "applications: []"
    bad(svc, "spec.serveConfigV2.applications")
    svc["spec"]["serveConfigV2"] = "applications:\n  - name: x\n"
    bad(svc, "spec.serveConfigV2.applications[0].import_path")


def test_rbac_role_is_least_privilege() -> None:
    role = kuberay.role_manifest("ml")
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "ml"
    ray_rule, secrets, policies = role["rules"]
    assert ray_rule["apiGroups"] == ["ray.io"]
    assert sorted(ray_rule["resources"]) == ["rayclusters", "rayjobs", "rayservices"]
    assert "*" not in ray_rule["verbs"] and "update" not in ray_rule["verbs"]
    # the token Secret and the NetworkPolicy: create and get by name only (no list: no reading
    # other Secrets of the namespace, no patch or delete: they go with their Ray object)
    assert (secrets["apiGroups"], secrets["resources"]) == ([""], ["secrets"])
    assert (policies["apiGroups"], policies["resources"]) == (["networking.k8s.io"],
                                                             ["networkpolicies"])
    assert sorted(secrets["verbs"]) == sorted(policies["verbs"]) == ["create", "get"]


def test_import_stays_light() -> None:
    code = ("import sys, ainative; ainative.kuberay.raycluster_manifest; "
            "print(sorted(m for m in ('kubernetes', 'ray', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_schemas_are_the_v1_kuberay_crds() -> None:
    for kind, plural in schema.PLURALS.items():
        s = schema.crd_schema(kind)
        assert s["type"] == "object" and "spec" in s["properties"], plural
    assert "workerGroupSpecs" in schema.crd_schema("RayCluster")["properties"]["spec"]["properties"]


def test_train_job_object_ships_whole_and_the_entry_runs_it(tmp_path: Any) -> None:
    import os

    from ainative.cluster.kuberay import entry
    from tests.kuberay.jobs_for_tests import LookAlikeJob

    m = kuberay.rayjob_manifest(LookAlikeJob("My_Train.v2", "m-42"), research(),
                                runtime_env={"env_vars": {"A": "1"}})
    # DNS-1035 for Kubernetes; converted lossily, so a hash of the original name is appended
    assert m["metadata"]["name"] == f"my-train-v2-{naming.short_hash('My_Train.v2')}"
    assert m["spec"]["entrypoint"] == "python -m ainative.cluster.kuberay.entry"
    env = yaml.safe_load(m["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["A"] == "1"
    run = subprocess.run([sys.executable, "-m", "ainative.cluster.kuberay.entry"],
                         env={**os.environ, entry.ENV_VAR: env[entry.ENV_VAR]},
                         capture_output=True, text=True, timeout=120, cwd=os.getcwd())
    assert run.returncode == 0, run.stderr
    assert "ran m-42" in run.stdout and "TrainResult(ok)" in run.stdout


def test_real_train_job_round_trips() -> None:
    from ainative.cluster.kuberay import entry
    from tests.kuberay.jobs_for_tests import train_loop

    job = ai.TrainJob(train_loop, workers=2, name="llama_ft")
    m = kuberay.rayjob_manifest(job, research())
    assert m["metadata"]["name"] == f"llama-ft-{naming.short_hash('llama_ft')}"
    payload = yaml.safe_load(m["spec"]["runtimeEnvYAML"])["env_vars"][entry.ENV_VAR]
    back = entry.decode(payload)
    assert type(back) is type(job) and back.name == "llama_ft" and back.train_fn is train_loop
    assert back.max_workers == 2


def test_ainative_endpoint_with_an_import_path_serves_that_application() -> None:
    from tests.kuberay.jobs_for_tests import train_loop

    endpoint = ai.Endpoint(train_loop, name="clf", route="/v1/clf")
    m = kuberay.rayservice_manifest(endpoint, research(), import_path="mypkg.serve:app")
    (app,) = yaml.safe_load(m["spec"]["serveConfigV2"])["applications"]
    assert app == {"name": "clf", "route_prefix": "/v1/clf", "import_path": "mypkg.serve:app"}
