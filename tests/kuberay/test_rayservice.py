"""A RayService from an ``ai.Endpoint``: CRD-valid, Serve-valid, and the same deployments (resources,
batching, autoscaling policy) that ``Endpoint.deploy()`` builds through ``serve/_runtime``.
Imports Ray Serve's schema and builds (never runs) the local application: no Ray is started."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import yaml

import ainative as ai
from ainative import errors
from ainative.cluster import kuberay
from ainative import kuberay_serve
from ainative.cluster.kuberay import serve_config
from tests.kuberay.jobs_for_tests import train_loop


def spec() -> ai.KubeRayClusterConfig:
    return ai.KubeRayClusterConfig(
        name="serving", namespace="ml", image="rayproject/ray:2.60.0-py311-gpu",
        worker_groups=[ai.NodeGroupConfig(name="l4", accelerator=ai.Accelerator("L4", count=1),
                                          cpus=8, memory="32Gi", replicas=1, max_replicas=4)],
        autoscaling=True)


def endpoint(**overrides: Any) -> ai.Endpoint:
    fields: dict[str, Any] = dict(
        name="ranker_v2", route="/v2/rank",
        resources=ai.Resources(cpus=2, memory_bytes=4 << 30,
                               accelerator=ai.Accelerator("L4", count=0.5)),
        batching=ai.BatchingConfig(max_batch_size=24, max_wait_ms=7.5),
        autoscaling=ai.AutoscalingConfig(min_replicas=2, max_replicas=8, latency_slo_ms=150,
                                         target_concurrency=6))
    fields.update(overrides)
    return ai.Endpoint(train_loop, **fields)


def application(manifest: dict[str, Any]) -> dict[str, Any]:
    (app,) = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"]
    return app  # type: ignore[no-any-return]


def test_rayservice_from_endpoint_validates_and_carries_everything() -> None:
    ep = endpoint()
    m = kuberay.rayservice_manifest(ep, spec())
    kuberay.validate(m)  # the v1.7.0 RayService CRD + operator rules
    assert m["metadata"]["name"].startswith("ranker-v2-")  # '_' is not DNS: hashed suffix
    app = application(m)
    assert (app["name"], app["route_prefix"]) == ("ranker_v2", "/v2/rank")
    assert app["import_path"] == "ainative.kuberay_serve:build"
    deps = {d["name"]: d for d in app["deployments"]}
    model = deps["ranker_v2-model"]
    assert model["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0.5,
                                          "resources": {"accelerator_type:L4": pytest.approx(0.001)},
                                          "memory": 4 << 30}
    assert model["max_ongoing_requests"] == 4 * 24  # room to fill batches
    auto = model["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (2, 8)
    assert auto["policy"]["policy_function"] == "ainative.serve._autoscale:EndpointPolicy"
    assert auto["policy"]["policy_kwargs"] == ep.autoscaling.to_dict()
    assert app["args"]["batching"] == {"max_batch_size": 24, "max_wait_ms": 7.5,
                                       "shrink_from": 0.5}
    assert app["args"]["model"] == "tests.kuberay.jobs_for_tests:train_loop"
    cluster = m["spec"]["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token"


def test_serve_accepts_the_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    parsed = ServeDeploySchema.model_validate(
        yaml.safe_load(kuberay.rayservice_manifest(endpoint(), spec())["spec"]["serveConfigV2"]))
    (app,) = parsed.applications
    model = next(d for d in app.deployments if d.name == "ranker_v2-model")
    assert model.autoscaling_config["policy"]["policy_function"] == serve_config.POLICY


def resolve(path: Any) -> Any:
    from ray._common.utils import import_attr

    return import_attr(path) if isinstance(path, str) else path


def _bound(app: Any) -> dict[str, Any]:
    """name -> bound deployment, through the application graph that build_app returns."""
    from ray.serve.deployment import Application

    out: dict[str, Any] = {}
    todo = [app]
    while todo:
        dep = todo.pop()._bound_deployment
        out[dep.name] = dep
        todo += [a for a in (*dep.init_args, *dep.init_kwargs.values())
                 if isinstance(a, Application)]
    return out


@pytest.mark.parametrize("overrides", [
    {}, {"batching": None},
    {"autoscaling": ai.AutoscalingConfig(min_replicas=1, max_replicas=3,
                                         scale_to_zero_after_s=60)},
    {"resources": ai.Resources(cpus=1)}, {"fast_path": True}])
def test_deployments_equal_what_endpoint_deploy_builds(overrides: dict[str, Any]) -> None:
    """The serveConfigV2 entries repeat build_app's options exactly (so the RayService runs the
    same deployments), and the builder rebuilds the same endpoint from the args."""
    from ainative.serve import _runtime

    ep = endpoint(**overrides)
    app = application(kuberay.rayservice_manifest(ep, spec()))
    local = _bound(_runtime.build_app(ep, ep.model))
    assert set(local) == {d["name"] for d in app["deployments"]}
    for entry in app["deployments"]:
        dep = local[entry["name"]]
        config = dep._deployment_config
        configured = set(config.user_configured_option_names) - {"name", "_init_args",
                                                                  "_init_kwargs"}
        assert configured == set(entry) - {"name"}, entry["name"]
        for key, value in entry.items():
            if key == "name":
                continue
            if key == "ray_actor_options":
                assert dep.ray_actor_options == value
            elif key == "autoscaling_config":
                ours = dict(value)
                policy = ours.pop("policy")
                theirs = config.autoscaling_config
                for k, v in ours.items():
                    assert getattr(theirs, k) == v, k
                # Serve keeps a class as its dotted path; both name the same class
                assert resolve(theirs.policy.policy_function) is resolve(
                    policy["policy_function"]) is importlib.import_module(
                        "ainative.serve._autoscale").EndpointPolicy
                assert theirs.policy.policy_kwargs == policy["policy_kwargs"]
            else:
                assert getattr(config, key) == value, key
    assert serve_config.ROUTER_ENV == _runtime.ROUTER_ENV
    assert serve_config.DRAIN_ENV_DEFAULTS == _runtime.DRAIN_ENV_DEFAULTS
    assert serve_config.HEAD_RESOURCE == _runtime.HEAD_RESOURCE
    # the in-cluster builder rebuilds the same endpoint from the args
    back = kuberay_serve.endpoint_from_args(app["args"])
    assert (back.name, back.route, back.model) == (ep.name, ep.route, ep.model)
    assert (back.resources, back.batching, back.autoscaling) == (ep.resources, ep.batching,
                                                                 ep.autoscaling)
    assert (back.idempotent, back.max_request_bytes, back.request_timeout_s, back.fast_path) == (
        ep.idempotent, ep.max_request_bytes, ep.request_timeout_s, ep.fast_path)


def test_a_fast_path_rayservice_has_no_ingress_deployment() -> None:
    """One hop: the application's only deployment is the model's, which makes the edge's checks
    (``FastReplica``); the ingress path's application keeps both."""
    from ainative.serve import _fastpath, _replica, _runtime

    for fast, names, body in ((True, ["ranker_v2-model"], _fastpath.FastReplica),
                              (False, ["ranker_v2-ingress", "ranker_v2-model"],
                               _replica.ModelReplica)):
        ep = endpoint(fast_path=fast)
        m = kuberay.rayservice_manifest(ep, spec())
        kuberay.validate(m)
        app = application(m)
        assert [d["name"] for d in app["deployments"]] == names
        assert app["args"]["fast_path"] is fast
        local = _bound(_runtime.build_app(ep, ep.model))
        assert sorted(local) == names
        assert local["ranker_v2-model"].func_or_class is body


def test_unimportable_model_or_a_queue_is_refused() -> None:
    with pytest.raises(errors.ConfigError, match="__main__ or locally"):
        kuberay.rayservice_manifest(ai.Endpoint(lambda: (lambda x: x), name="l"), spec())
    with pytest.raises(errors.ConfigError, match="args miss"):
        kuberay_serve.endpoint_from_args({"name": "x"})
