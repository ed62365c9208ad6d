"""KubeRay secure defaults and input checks: pure manifests (no API server, no Ray)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import ainative as ai
from ainative import errors
from ainative.cluster import kuberay
from ainative.cluster.kuberay import manifests, naming, schema, security


def cfg(**overrides: Any) -> ai.KubeRayClusterConfig:
    fields: dict[str, Any] = dict(
        name="research", namespace="ml",
        worker_groups=[ai.NodeGroupConfig(name="h100", accelerator=ai.Accelerator("H100", count=8),
                                          cpus=96, memory="1Ti")])
    fields.update(overrides)
    return ai.KubeRayClusterConfig(**fields)


JOB = {"name": "eval", "entrypoint": "python eval.py"}


def cluster_specs() -> dict[str, dict[str, Any]]:
    """The cluster spec inside each kind ainative generates."""
    spec = cfg()
    return {"RayCluster": kuberay.raycluster_manifest(spec)["spec"],
            "RayJob": kuberay.rayjob_manifest(JOB, spec)["spec"]["rayClusterSpec"],
            "RayService": kuberay.rayservice_manifest({"name": "svc", "import_path": "a:b"},
                                                      spec)["spec"]["rayClusterConfig"]}


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob", "RayService"])
def test_token_auth_is_on_by_default_and_names_a_secret(kind: str) -> None:
    spec = cluster_specs()[kind]
    auth = spec["authOptions"]
    assert auth["mode"] == "token" and auth["secretName"].endswith("-ray-auth")
    # the CRD allows exactly these fields and modes (read from the shipped v1.7.0 schema)
    crd = schema.crd_schema("RayCluster")["properties"]["spec"]["properties"]["authOptions"]
    assert set(auth) <= set(crd["properties"]) and auth["mode"] in crd["properties"]["mode"]["enum"]


def test_the_secret_holds_the_token_and_the_ray_objects_never_do() -> None:
    spec = cfg()
    secret = security.auth_secret_manifest(spec, "research")
    assert secret is not None
    token = secret["stringData"][security.TOKEN_KEY]
    assert security.TOKEN_KEY == "auth_token" and len(token) >= 32
    assert secret["metadata"]["name"] == "research-ray-auth"
    assert secret["metadata"]["labels"][manifests.OWNER_LABEL] == "ainative"
    again = security.auth_secret_manifest(spec, "research")
    assert again is not None and again["stringData"][security.TOKEN_KEY] != token  # random
    for kind, body in cluster_specs().items():
        text = json.dumps(body)
        assert token not in text and "RAY_AUTH_TOKEN" not in text, kind
        # every container env value comes from a Secret or is not a secret
        for group in [body["headGroupSpec"], *body["workerGroupSpecs"]]:
            for c in group["template"]["spec"]["containers"]:
                assert all("value" not in e or not naming.SECRET_NAME.search(e["name"])
                           for e in c.get("env", []))


def test_existing_secret_or_disabled_auth() -> None:
    spec = cfg(auth_secret="team-ray-token")
    assert kuberay.raycluster_manifest(spec)["spec"]["authOptions"] == {
        "mode": "token", "secretName": "team-ray-token"}
    assert security.auth_secret_manifest(spec) is None  # nothing of ours to create
    off = cfg(auth="disabled")
    assert kuberay.raycluster_manifest(off)["spec"]["authOptions"] == {"mode": "disabled"}
    assert security.companions(off, "research") == []


def test_dashboard_binds_localhost_unless_asked() -> None:
    specs = cluster_specs()
    head = {k: v["headGroupSpec"] for k, v in specs.items()}
    assert head["RayCluster"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert all(h["serviceType"] == "ClusterIP" for h in head.values())
    # the operator polls RayJob and Serve status through the head Service's dashboard port, so
    # those bind the pod network, behind the token
    for kind in ("RayJob", "RayService"):
        assert head[kind]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
        assert specs[kind]["authOptions"]["mode"] == "token"
    job = kuberay.rayjob_manifest(JOB, cfg())["spec"]
    assert job["submissionMode"] == "SidecarMode"  # no submitter pod for a NetworkPolicy to admit
    exposed = kuberay.raycluster_manifest(cfg(expose_dashboard=True))["spec"]["headGroupSpec"]
    assert exposed["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    on_existing = kuberay.rayjob_manifest(JOB, cfg(), cluster_selector={"ray.io/cluster": "r"})
    assert on_existing["spec"]["submissionMode"] == "K8sJobMode"  # SidecarMode cannot select
    lb = kuberay.raycluster_manifest(cfg(head_service_type="LoadBalancer"))
    assert lb["spec"]["headGroupSpec"]["serviceType"] == "LoadBalancer"


def test_network_policy_admits_own_pods_and_named_namespaces() -> None:
    spec = cfg(network_policy=True, allowed_namespaces=["notebooks", "ray-system"])
    cluster = kuberay.raycluster_manifest(spec)
    policy = kuberay.networkpolicy_manifest(spec)
    assert [m["kind"] for m in security.companions(spec, "research")] == ["Secret",
                                                                          "NetworkPolicy"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    # it selects exactly the Ray pods of this cluster (head and every worker group)
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        labels = group["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in selector.items())
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    own, spaces = rule["from"]
    assert own == {"podSelector": {"matchLabels": selector}}
    assert spaces["namespaceSelector"]["matchExpressions"][0]["values"] == ["notebooks",
                                                                            "ray-system"]
    assert not cfg().network_policy  # opt-in


@pytest.mark.parametrize("field,value,rule", [
    ("name", "Research", "DNS-1035"),
    ("name", "r" * 54, "at most 53"),
    ("namespace", "ML", "DNS-1123"),
    ("namespace", "n" * 64, "at most 63"),
    ("owner", "team a", "label value"),
    ("owner", "o" * 64, "label value"),
    ("owner", "", "non-empty"),
    ("labels", {"ainative.io/owner": "mallory"}, "reserved"),
    ("labels", {"ainative.io/cluster": "x"}, "reserved"),
    ("labels", {"app.kubernetes.io/managed-by": "me"}, "reserved"),
    ("labels", {"bad key": "x"}, "key name"),
    ("labels", {"Example.com/x": "y"}, "key prefix"),
    ("labels", {"team": "-x"}, "label value"),
    ("labels", {"team": 3}, "strings"),
    ("queue", "team a", "label value"),
    ("accelerator_label", "not a/key/x", "key"),
    ("allowed_namespaces", ["Bad"], "DNS-1123"),
    ("allowed_namespaces", "notebooks", "list"),
    ("auth", "none", "one of"),
    ("auth_secret", "Bad_Name", "Secret"),
    ("ray_version", "2.40.0", "2.52.0"),
    ("head_service_type", "Ingress", "one of"),
    ("expose_dashboard", "yes", "true or false"),
    ("worker_groups", None, "list"),
    ("worker_groups", 5, "list"),
    ("worker_groups", [{"name": "g"}], "NodeGroupConfig"),
    ("head", {"cpus": 2}, "NodeGroupConfig"),
])
def test_cluster_config_refuses_with_field_value_and_rule(field: str, value: Any,
                                                          rule: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        cfg(**{field: value})
    message = str(info.value)
    assert f"KubeRayClusterConfig.{field}" in message and rule in message, message
    if isinstance(value, str):  # the message names the value it refuses
        assert repr(value)[:30].rstrip("'") in message


@pytest.mark.parametrize("fields,rule", [
    ({"env": {"HF_TOKEN": "hf_abc"}}, "secret_env"),
    ({"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "secret_env"),
    ({"env": {"db_password": "x"}}, "secret_env"),
    ({"env": {"WANDB_API_KEY": "x"}}, "secret_env"),
    ({"secret_env": {"HF_TOKEN": "hf-token"}}, "SECRET:KEY"),
    ({"secret_env": {"HF_TOKEN": "Bad:token"}}, "SECRET:KEY"),
    ({"env": {"A": "1"}, "secret_env": {"A": "s:k"}}, "both"),
    ({"labels": {"ainative.io/owner": "x"}}, "reserved"),
    ({"node_selector": {"bad key": "x"}}, "key name"),
    ({"cpus": float("nan")}, "cpus"),
    ({"tolerations": 5}, "tolerations"),
])
def test_node_group_refusals(fields: dict[str, Any], rule: str) -> None:
    with pytest.raises(errors.ConfigError, match=rule):
        ai.NodeGroupConfig(**fields)


def test_plain_env_that_is_not_secret_is_fine_and_secret_env_is_a_reference() -> None:
    group = ai.NodeGroupConfig(name="w", env={"KEYSPACE": "a", "LOG_LEVEL": "info"},
                               secret_env={"HF_TOKEN": "hf-token:token"})
    spec = cfg(worker_groups=[group])
    (worker,) = kuberay.raycluster_manifest(spec)["spec"]["workerGroupSpecs"]
    env = worker["template"]["spec"]["containers"][0]["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token",
                                                               "key": "token"}}} in env
    assert {"name": "KEYSPACE", "value": "a"} in env


def test_runtime_env_secret_is_refused() -> None:
    with pytest.raises(errors.ConfigError, match="secret_env"):
        kuberay.rayjob_manifest(JOB, cfg(), runtime_env={"env_vars": {"OPENAI_API_KEY": "sk"}})


def test_from_dict_bad_shapes_are_config_errors() -> None:
    for data in ({"name": "r", "worker_groups": 5}, {"name": "r", "worker_groups": [5]},
                 {"name": "r", "worker_groups": [{"accelerator": {"typ": "H100"}}]},
                 {"name": "r", "head": 3}, {"name": "r", "nope": 1}, [1, 2]):
        with pytest.raises(errors.ConfigError):
            ai.KubeRayClusterConfig.from_dict(data)  # type: ignore[arg-type]


def test_user_labels_never_override_ownership() -> None:
    spec = cfg(labels={"team": "vision"}, owner="team-vision")
    m = kuberay.raycluster_manifest(spec)
    assert m["metadata"]["labels"][manifests.OWNER_LABEL] == "team-vision"
    pod = m["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert pod[manifests.OWNER_LABEL] == "team-vision" and pod[manifests.CLUSTER_LABEL] == "research"


@pytest.mark.parametrize("names", [("exp.1", "exp_1", "exp-1"), ("Exp1", "exp1"),
                                   ("a" * 60 + "_x", "a" * 60 + ".x", "a" * 60 + "-x"),
                                   ("1st", "x-1st")])
def test_lossy_names_get_a_hash_suffix_and_never_collide(names: tuple[str, ...]) -> None:
    out = [manifests.rayjob_name(n) for n in names]
    assert len(set(out)) == len(out), out
    for name, converted in zip(names, out):
        naming.check_name("t", "name", converted, "RayJob")
        lossless = naming.DNS_1035.match(name) and len(name) <= 47
        assert (converted == name) == bool(lossless)
        if not lossless:
            assert converted.endswith(naming.short_hash(name))
    assert manifests.rayjob_name("exp-1") == "exp-1"  # already valid: kept as is


def test_payload_hash_annotation_tracks_the_spec() -> None:
    a = kuberay.rayjob_manifest(JOB, cfg())
    b = kuberay.rayjob_manifest(JOB, cfg())
    c = kuberay.rayjob_manifest({**JOB, "entrypoint": "python other.py"}, cfg())
    key = manifests.PAYLOAD_HASH
    assert a["metadata"]["annotations"][key] == b["metadata"]["annotations"][key]
    assert a["metadata"]["annotations"][key] != c["metadata"]["annotations"][key]
    assert a["metadata"]["annotations"][key] == naming.payload_hash(a["spec"])
    for m in (kuberay.raycluster_manifest(cfg()),
              kuberay.rayservice_manifest({"name": "s", "import_path": "a:b"}, cfg())):
        assert key in m["metadata"]["annotations"]
        kuberay.validate(m)


BAD_VALUES: list[Any] = [None, 5, -1, 0, 1.5, float("nan"), float("inf"), True, "", "x y", "Z",
                         [], [5], {}, {"a": 1}, {1: "a"}, object(), b"bytes", ("t",)]


@pytest.mark.parametrize("cls", [ai.KubeRayClusterConfig, ai.NodeGroupConfig])
def test_every_field_takes_bad_values_as_config_errors_only(cls: Any) -> None:
    """Each field set to each odd value: the constructor builds or raises ConfigError, nothing
    else (no TypeError, KeyError, AttributeError from deep inside)."""
    import dataclasses

    base: dict[str, Any] = {"name": "research"} if cls is ai.KubeRayClusterConfig else {}
    refused = 0
    for field in dataclasses.fields(cls):
        for value in BAD_VALUES:
            try:
                cls(**{**base, field.name: value})
            except errors.ConfigError as exc:
                refused += 1
                assert str(exc)
    assert refused > len(dataclasses.fields(cls)) * 5  # most of these are nonsense


def test_from_dict_takes_bad_values_as_config_errors_only() -> None:
    for field in ("head", "worker_groups", "labels", "allowed_namespaces", "auth"):
        for value in BAD_VALUES:
            try:
                ai.KubeRayClusterConfig.from_dict({"name": "r", field: value})
            except errors.ConfigError:
                pass
    for value in BAD_VALUES:
        try:
            ai.NodeGroupConfig.from_dict({"name": "g", "accelerator": value})
        except errors.ConfigError:
            pass
