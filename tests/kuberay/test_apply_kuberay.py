"""`ainative apply --kuberay` over mixed spec files, `up`/`submit` input errors, and the Secret /
NetworkPolicy that go with each Ray object: the real client against the fake API server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from ainative import errors
from ainative.cli import main as cli
from ainative.cluster import kuberay
from ainative.cluster.kuberay import manifests
from ainative.cluster.kuberay.client import KubeRayClient
from tests.kuberay.fake_apiserver import FakeApiServer

CLUSTER = """\
kind: KubeRayCluster
name: apply-base
namespace: {ns}
head: {{cpus: 2, memory: 8Gi}}
worker_groups:
  - {{name: cpu, cpus: 4, memory: 16Gi, replicas: 1}}
network_policy: true
allowed_namespaces: [ray-system]
"""

MIXED = """\
kind: KubeRayCluster
name: notebooks
namespace: {ns}
head: {{cpus: 1, memory: 4Gi}}
---
kind: Endpoint
name: ranker
model: tests.kuberay.jobs_for_tests:train_loop
route: /rank
batching: {{max_batch_size: 8, max_wait_ms: 2}}
autoscaling: {{min_replicas: 1, max_replicas: 3}}
---
kind: TrainJob
name: nightly.ft
entrypoint: tests.kuberay.jobs_for_tests:train_loop
workers: 2
"""


@pytest.fixture
def kubeconfig(apiserver: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return str(path)


def objects(apiserver: FakeApiServer, ns: str) -> set[tuple[str, str]]:
    with apiserver.store.cond:
        return {(plural, name) for (plural, space, name) in apiserver.store.objects if space == ns}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_mixed_file_places_every_kind(kubeconfig: str, apiserver: FakeApiServer, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ns = "apply-mixed"
    cluster = write(tmp_path, "cluster.yaml", CLUSTER.format(ns=ns))
    spec = write(tmp_path, "spec.yaml", MIXED.format(ns=ns))
    assert cli.main(["apply", spec, "--kuberay", cluster, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "KubeRayCluster notebooks -> RayCluster" in out and "Endpoint ranker -> RayService" in out
    assert "TrainJob nightly.ft -> RayJob" in out and objects(apiserver, ns) == set()
    assert cli.main(["apply", spec, "--kuberay", cluster, "--json"]) == 0
    job = manifests.rayjob_name("nightly.ft")
    found = objects(apiserver, ns)
    assert ("rayclusters", "notebooks") in found and ("rayjobs", job) in found
    services = [n for p, n in found if p == "rayservices"]
    assert len(services) == 1 and services[0].startswith("ranker")
    # every Ray object got its token Secret; the RayJob and RayService (built from the
    # --kuberay cluster spec, network_policy: true) also their NetworkPolicy
    for owner in ("notebooks", job, services[0]):
        secret = apiserver.store.get("secrets", ns, f"{owner}-ray-auth")
        assert secret is not None and len(base64.b64decode(secret["data"]["auth_token"])) >= 32
        assert secret["metadata"]["ownerReferences"][0]["name"] == owner
    assert ("networkpolicies", f"{job}-ray") in found
    assert ("networkpolicies", "notebooks-ray") not in found  # its own spec did not ask
    rayjob = apiserver.store.get("rayjobs", ns, job)
    assert rayjob is not None and rayjob["spec"]["rayClusterSpec"]["authOptions"] == {
        "mode": "token", "secretName": f"{job}-ray-auth"}
    assert '"ok": true' in capsys.readouterr().out.replace("True", "true")


@pytest.mark.parametrize("extra,kind,line", [
    ("kind: Queue\nname: team-a\nquota: {H100: 4}\n", "Queue", 1),
    ("kind: Dataset\nname: ids\nsource: {range: {rows: 10}}\n", "Dataset", 1),
    ("kind: Budget\nqueue: team-a\nusd: 5\n", "Budget", 1),
])
def test_a_document_that_cannot_be_placed_refuses_the_whole_file(
        kubeconfig: str, apiserver: FakeApiServer, tmp_path: Path, extra: str, kind: str,
        line: int, capsys: pytest.CaptureFixture[str]) -> None:
    ns = f"apply-refused-{kind.lower()}"
    cluster = write(tmp_path, "cluster.yaml", CLUSTER.format(ns=ns))
    if kind == "Budget":  # the budget's queue must exist for the spec loader; the Queue
        extra = "kind: Queue\nname: team-a\nquota: {H100: 4}\n---\n" + extra  # is refused
        kind = "Queue"
    text = MIXED.format(ns=ns) + "---\n" + extra
    spec = write(tmp_path, "spec.yaml", text)
    first_line = text.count("\n", 0, text.index(extra)) + 1
    for argv in (["apply", spec, "--kuberay", cluster, "--dry-run"],
                 ["apply", spec, "--kuberay", cluster]):
        assert cli.main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert f"{spec}:" in err and "Traceback" not in err
        assert f"{spec}:{first_line + line - 1}:" in err and f"{kind}" in err
        assert "cannot be placed on KubeRay" in err
    assert objects(apiserver, ns) == set()  # nothing created, not even the documents before it


def test_submit_refuses_other_kinds_instead_of_skipping(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "spec.yaml", MIXED.format(ns="x"))
    cluster = write(tmp_path, "cluster.yaml", CLUSTER.format(ns="x"))
    assert cli.main(["submit", spec, "--kuberay", cluster, "--dry-run"]) == cli.EXIT_USAGE
    assert f"{spec}:1:" in capsys.readouterr().err


@pytest.mark.parametrize("text,expect", [
    (None, "cannot read spec file"),
    ("name: r\nworker_groups: [\n", "not valid YAML"),
    ("name: r\nworker_groups: 5\n", ":2: KubeRayClusterConfig.worker_groups"),
    ("kind: KubeRayCluster\nname: r\nworker_groups: 5\n", ":3:"),
    ("name: r\nworker_groups: [{name: g, accelerator: {typ: H100}}]\n", "accelerator"),
    ("- a\n- b\n", "expected one KubeRayCluster"),
    ("name: r\nlabels: {ainative.io/owner: x}\n", "reserved"),
    (b"name: r\n\xff\xfe\n", "cannot read"),
])
def test_up_and_submit_dry_run_give_clean_typed_errors(
        tmp_path: Path, text: str | bytes | None, expect: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cluster.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    job = write(tmp_path, "job.yaml", "name: j\nentrypoint: python j.py\n")
    for argv in (["up", str(path), "--dry-run"],
                 ["submit", job, "--kuberay", str(path), "--dry-run"]):
        assert cli.main(argv) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err, err
    assert cli.main(["submit", str(tmp_path / "none.yaml"), "--kuberay", str(path),
                     "--dry-run"]) == cli.EXIT_USAGE


def test_companions_are_created_once_and_a_foreign_secret_is_refused_first(
        kube: KubeRayClient, apiserver: FakeApiServer) -> None:
    spec = kuberay.KubeRayClusterConfig(name="comp", namespace="comp", network_policy=True)
    cluster = kuberay.up(spec, timeout_s=10, client=kube)
    secret = apiserver.store.get("secrets", "comp", "comp-ray-auth")
    assert secret is not None and apiserver.store.get("networkpolicies", "comp", "comp-ray")
    # a client joins with the token from the Secret
    env = cluster.auth_env()
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN"] == base64.b64decode(secret["data"]["auth_token"]).decode()
    kuberay.up(spec, timeout_s=10, client=kube)  # adopt: the token is kept, not rotated
    again = apiserver.store.get("secrets", "comp", "comp-ray-auth")
    assert again is not None and again["data"] == secret["data"]
    # a Secret of that name that is not ours: refused before the RayCluster is created
    apiserver.create_companion("secrets", "comp", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other-ray-auth"},
        "stringData": {"auth_token": "someone-elses"}})
    other = kuberay.KubeRayClusterConfig(name="other", namespace="comp")
    with pytest.raises(errors.KubeRayConflictError, match="not ours.*auth_secret"):
        kuberay.up(other, timeout_s=10, client=kube)
    assert kube.get("RayCluster", "comp", "other") is None
    # naming it explicitly is how to use it
    kuberay.up(kuberay.KubeRayClusterConfig(name="other", namespace="comp",
                                            auth_secret="other-ray-auth"), timeout_s=10,
               client=kube)


def test_submit_adopts_only_the_same_payload(kube: KubeRayClient) -> None:
    spec = kuberay.KubeRayClusterConfig(name="base", namespace="adopt")
    job = {"name": "exp-1", "entrypoint": "python train.py --lr 1e-3"}
    first = kuberay.submit(job, spec, client=kube)
    again = kuberay.submit(dict(job), spec, client=kube)
    assert first.created and not again.created  # a resubmission of the same job
    with pytest.raises(errors.KubeRayConflictError, match="another payload.*ainative down") as info:
        kuberay.submit({**job, "entrypoint": "python train.py --lr 3e-4"}, spec, client=kube)
    assert info.value.details["reason"] == "payload-hash"
    # same entrypoint, other cluster shape: also another payload
    bigger = kuberay.KubeRayClusterConfig(name="base", namespace="adopt",
                                          head=kuberay.NodeGroupConfig(name="head", cpus=8))
    with pytest.raises(errors.KubeRayConflictError, match="another payload"):
        kuberay.submit(dict(job), bigger, client=kube)
    # names that convert to the same DNS name never meet: exp.1 and exp_1 are two RayJobs
    a = kuberay.submit({"name": "exp.1", "entrypoint": "python a.py"}, spec, client=kube)
    b = kuberay.submit({"name": "exp_1", "entrypoint": "python b.py"}, spec, client=kube)
    assert a.created and b.created and len({a.name, b.name, first.name}) == 3
