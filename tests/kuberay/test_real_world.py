"""Real-world manifest shapes (tests/kuberay/samples, written in the shape of KubeRay's documented
samples): our validator accepts what the operator accepts, and the fake API server creates them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ainative import errors
from ainative.cluster import kuberay
from ainative.cluster.kuberay.client import KubeRayClient

SAMPLES = sorted((Path(__file__).parent / "samples").glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    (doc,) = yaml.safe_load_all(path.read_text())
    return doc  # type: ignore[no-any-return]


def test_every_shape_is_present() -> None:
    shapes = {p.stem for p in SAMPLES}
    assert {"raycluster-generate-name", "rayjob-custom-submitter", "rayservice-two-apps",
            "rayjob-sidecar-generate-name", "rayjob-cluster-selector"} <= shapes


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_sample_validates_and_is_created(path: Path, kube: KubeRayClient) -> None:
    manifest = load(path)
    kuberay.validate(manifest)  # no false rejection
    manifest["metadata"]["namespace"] = "samples"
    created = kube.create(manifest)
    meta = created["metadata"]
    if "generateName" in manifest["metadata"] and "name" not in manifest["metadata"]:
        prefix = manifest["metadata"]["generateName"]
        assert meta["name"].startswith(prefix) and len(meta["name"]) == len(prefix) + 5
    assert kube.get(manifest["kind"], "samples", meta["name"]) is not None
    kube.delete(manifest["kind"], "samples", meta["name"])


def test_default_submitter_still_needs_an_entrypoint() -> None:
    manifest = load(Path(__file__).parent / "samples" / "rayjob-custom-submitter.yaml")
    container = manifest["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    del container["command"]  # now KubeRay's default `ray job submit ... -- <entrypoint>` runs
    with pytest.raises(errors.KubeRayValidationError, match="spec.entrypoint"):
        kuberay.validate(manifest)
    manifest["spec"]["entrypoint"] = "python /app/etl.py"
    kuberay.validate(manifest)


@pytest.mark.parametrize("prefix,ok", [
    ("scratch-", True), ("s", True), ("a" * 48, True),  # 48 + 5 = 53, the RayCluster limit
    ("a" * 49, False), ("Scratch-", False), ("1abc-", False), ("", False)])
def test_generate_name_prefix_rules(prefix: str, ok: bool) -> None:
    manifest = load(Path(__file__).parent / "samples" / "raycluster-generate-name.yaml")
    manifest["metadata"]["generateName"] = prefix
    if ok:
        kuberay.validate(manifest)
    else:
        with pytest.raises(errors.KubeRayValidationError, match="metadata"):
            kuberay.validate(manifest)


def test_sidecar_mode_refuses_what_the_operator_refuses() -> None:
    manifest = load(Path(__file__).parent / "samples" / "rayjob-sidecar-generate-name.yaml")
    bad = copy.deepcopy(manifest)
    bad["spec"]["submitterPodTemplate"] = {"spec": {"containers": [{"name": "s", "image": "x"}]}}
    with pytest.raises(errors.KubeRayValidationError, match="submitterPodTemplate"):
        kuberay.validate(bad)


@pytest.mark.parametrize("auth,version,ok", [
    ({"mode": "token"}, "2.52.0", True), ({"mode": "token"}, "2.51.1", False),
    ({"mode": "disabled"}, "2.9.0", True), ({"mode": "token", "enableK8sTokenAuth": True},
                                            "2.54.0", False),
    ({"mode": "token", "enableK8sTokenAuth": True, "secretName": "s"}, "2.60.0", False),
    ({"mode": "disabled", "enableK8sTokenAuth": True}, "2.60.0", False)])
def test_auth_options_rules(auth: dict[str, Any], version: str, ok: bool) -> None:
    manifest = load(Path(__file__).parent / "samples" / "raycluster-generate-name.yaml")
    manifest["spec"].update(authOptions=auth, rayVersion=version)
    if ok:
        kuberay.validate(manifest)
    else:
        with pytest.raises(errors.KubeRayValidationError, match="authOptions|rayVersion"):
            kuberay.validate(manifest)


@pytest.mark.parametrize("labels", [{"bad key!": "x"}, {"team": "has space"},
                                    {"team": "x" * 64}, {"-lead": "x"}])
def test_bad_labels_are_refused_by_us_and_by_the_api_server(labels: dict[str, str],
                                                             kube: KubeRayClient) -> None:
    manifest = load(Path(__file__).parent / "samples" / "raycluster-generate-name.yaml")
    manifest["metadata"].update(labels=labels, namespace="samples")
    with pytest.raises(errors.KubeRayValidationError, match="metadata.labels"):
        kuberay.validate(manifest)
    with pytest.raises(errors.KubeRayValidationError) as info:
        kube.create(manifest)  # bypassing our validation: the server answers 422 itself
    assert info.value.status == 422
