"""The fake API server speaks the wire protocol the real ``kubernetes`` client expects."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

import ainative as ai
from ainative.cluster import kuberay
from tests.kuberay.fake_apiserver import FakeApiServer, json_patch, label_match, merge_patch

G, V = "ray.io", "v1"


@pytest.fixture(scope="module")
def server():
    s = FakeApiServer().start()  # no operator: these tests look at the protocol alone
    yield s
    s.stop()


@pytest.fixture
def api(server: FakeApiServer) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(server.api_client())


def manifest(name: str, **labels: str) -> dict[str, Any]:
    m = kuberay.raycluster_manifest(ai.KubeRayClusterConfig(
        name=name, namespace="ns", worker_groups=[ai.NodeGroupConfig(name="w", replicas=1)]))
    m["metadata"]["labels"].update(labels)
    return m


def test_create_get_conflict(api: k8s.CustomObjectsApi) -> None:
    obj, code, _ = api.create_namespaced_custom_object_with_http_info(
        G, V, "ns", "rayclusters", manifest("alpha"))
    assert code == 201
    meta = obj["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1
    got = api.get_namespaced_custom_object(G, V, "ns", "rayclusters", "alpha")
    assert got["metadata"]["uid"] == meta["uid"]
    # defaults filled by the server, as a real one does
    assert got["spec"]["workerGroupSpecs"][0]["numOfHosts"] == 1
    with pytest.raises(ApiException) as info:
        api.create_namespaced_custom_object(G, V, "ns", "rayclusters", manifest("alpha"))
    assert info.value.status == 409 and '"reason": "AlreadyExists"' in info.value.body.replace(
        '":"', '": "')
    with pytest.raises(ApiException) as info:
        api.get_namespaced_custom_object(G, V, "ns", "rayclusters", "missing")
    assert info.value.status == 404 and "missing" in info.value.body


def test_422_comes_from_crd_validation(api: k8s.CustomObjectsApi) -> None:
    m = manifest("bad")
    m["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "many"
    with pytest.raises(ApiException) as info:
        api.create_namespaced_custom_object(G, V, "ns", "rayclusters", m)
    assert info.value.status == 422
    assert "spec.workerGroupSpecs[0].maxReplicas" in info.value.body


def test_unknown_fields_are_pruned_like_a_real_server(api: k8s.CustomObjectsApi) -> None:
    m = manifest("pruned")
    m["spec"]["headGroupSpec"]["notAField"] = 1
    obj = api.create_namespaced_custom_object(G, V, "ns", "rayclusters", m)
    assert "notAField" not in obj["spec"]["headGroupSpec"]


def test_list_with_label_selectors(api: k8s.CustomObjectsApi) -> None:
    for name, team in (("l-a", "a"), ("l-b", "b"), ("l-c", "a")):
        api.create_namespaced_custom_object(G, V, "ns", "rayclusters", manifest(name, team=team))
    names = lambda sel: sorted(o["metadata"]["name"] for o in api.list_namespaced_custom_object(  # noqa: E731
        G, V, "ns", "rayclusters", label_selector=sel)["items"])
    assert names("team=a") == ["l-a", "l-c"]
    assert names("team!=a,team") == ["l-b"]
    assert names("team in (b,c)") == ["l-b"]
    assert "l-a" not in names("!team")


def test_merge_json_patch_generation_and_status(api: k8s.CustomObjectsApi, server: FakeApiServer
                                                ) -> None:
    obj = api.create_namespaced_custom_object(G, V, "ns", "rayclusters", manifest("patchme"))
    rv0 = obj["metadata"]["resourceVersion"]
    obj = api.patch_namespaced_custom_object(G, V, "ns", "rayclusters", "patchme",
                                             {"metadata": {"labels": {"x": "1"}}})
    assert obj["metadata"]["labels"]["x"] == "1" and obj["metadata"]["generation"] == 1
    assert obj["metadata"]["resourceVersion"] != rv0
    obj = api.patch_namespaced_custom_object(
        G, V, "ns", "rayclusters", "patchme",
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/maxReplicas", "value": 5},
         {"op": "add", "path": "/status", "value": {"state": "hacked"}}],
        _content_type="application/json-patch+json")
    assert obj["spec"]["workerGroupSpecs"][0]["maxReplicas"] == 5
    assert obj["metadata"]["generation"] == 2  # spec changed
    assert "status" not in obj  # status only changes through the status subresource
    # a stale resourceVersion is a 409 (optimistic concurrency)
    with pytest.raises(ApiException) as info:
        api.patch_namespaced_custom_object(G, V, "ns", "rayclusters", "patchme",
                                           {"metadata": {"resourceVersion": rv0}})
    assert info.value.status == 409
    api.patch_namespaced_custom_object_status(G, V, "ns", "rayclusters", "patchme",
                                              {"status": {"state": "ready"}})
    got = api.get_namespaced_custom_object(G, V, "ns", "rayclusters", "patchme")
    assert got["status"] == {"state": "ready"} and got["metadata"]["generation"] == 2


def test_server_side_apply_creates_then_updates(api: k8s.CustomObjectsApi) -> None:
    m = manifest("applied")
    _, code, _ = api.patch_namespaced_custom_object_with_http_info(
        G, V, "ns", "rayclusters", "applied", m, field_manager="test", force=True,
        _content_type="application/apply-patch+yaml")
    assert code == 201  # created by the apply (the client maps no body type to 201)
    obj = api.get_namespaced_custom_object(G, V, "ns", "rayclusters", "applied")
    assert obj["metadata"]["generation"] == 1
    m["spec"]["rayVersion"] = "2.61.0"
    obj = api.patch_namespaced_custom_object(G, V, "ns", "rayclusters", "applied", m,
                                             field_manager="test", force=True,
                                             _content_type="application/apply-patch+yaml")
    assert obj["spec"]["rayVersion"] == "2.61.0" and obj["metadata"]["generation"] == 2


def test_watch_streams_events_from_a_resource_version(api: k8s.CustomObjectsApi,
                                                      server: FakeApiServer) -> None:
    obj = api.create_namespaced_custom_object(G, V, "ns", "rayclusters", manifest("watched"))
    rv = obj["metadata"]["resourceVersion"]

    def later() -> None:
        time.sleep(0.2)
        server.store.set_status("rayclusters", "ns", "watched", {"state": "ready"})
        api.delete_namespaced_custom_object(G, V, "ns", "rayclusters", "watched")

    threading.Thread(target=later, daemon=True).start()
    seen = []
    start = time.monotonic()
    for event in watch.Watch().stream(api.list_namespaced_custom_object, G, V, "ns", "rayclusters",
                                      field_selector="metadata.name=watched", resource_version=rv,
                                      timeout_seconds=3):
        seen.append((event["type"], (event["object"].get("status") or {}).get("state")))
        if event["type"] == "DELETED":
            break
    assert seen == [("MODIFIED", "ready"), ("DELETED", "ready")]
    assert time.monotonic() - start < 3


def test_watch_times_out_and_410_after_compaction(api: k8s.CustomObjectsApi,
                                                  server: FakeApiServer) -> None:
    obj = api.create_namespaced_custom_object(G, V, "ns", "rayclusters", manifest("quiet"))
    start = time.monotonic()
    events = list(watch.Watch().stream(
        api.list_namespaced_custom_object, G, V, "ns", "rayclusters",
        field_selector="metadata.name=quiet", resource_version=obj["metadata"]["resourceVersion"],
        timeout_seconds=1))
    assert events == [] and 0.9 < time.monotonic() - start < 3
    server.store.compact()
    with pytest.raises(ApiException) as info:
        list(watch.Watch().stream(
            api.list_namespaced_custom_object, G, V, "ns", "rayclusters",
            resource_version=obj["metadata"]["resourceVersion"], timeout_seconds=1))
    assert info.value.status == 410


def test_crd_not_installed_is_a_bare_404() -> None:
    s = FakeApiServer(installed=()).start()
    try:
        api = k8s.CustomObjectsApi(s.api_client())
        with pytest.raises(ApiException) as info:
            api.list_namespaced_custom_object(G, V, "ns", "rayclusters")
        assert info.value.status == 404
        assert "could not find the requested resource" in info.value.body
    finally:
        s.stop()


def test_patch_helpers() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}}
    assert merge_patch(doc, {"a": {"b": None, "d": 2}}) == {"a": {"c": [1, 2], "d": 2}}
    assert json_patch(doc, [{"op": "add", "path": "/a/c/-", "value": 3},
                            {"op": "remove", "path": "/a/b"}]) == {"a": {"c": [1, 2, 3]}}
    assert doc == copy.deepcopy({"a": {"b": 1, "c": [1, 2]}})
    assert label_match({"a": "1"}, "a=1,!b") and not label_match({"a": "1"}, "a notin (1)")
