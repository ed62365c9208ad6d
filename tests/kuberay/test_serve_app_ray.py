"""The serveConfigV2 of a RayService made from an ``ai.Endpoint``, deployed on real Ray Serve the
way KubeRay deploys it (the config goes to Serve's controller, which imports the builder by path
and applies the deployment options), then served over HTTP on 127.0.0.1.

Starts Ray: run it under the shared lock (``flock /tmp/ainative-ray.lock pytest ...``)."""

from __future__ import annotations

import time

import pytest
import requests
import yaml

import ainative as ai
from ainative.cluster import kuberay
from tests.kuberay.jobs_for_tests import doubler

NAME = "kr-double"


@pytest.fixture
def serve_on_ray(ray_local):  # noqa: ANN001, ANN201 (pytest fixture)
    from ray import serve

    from ainative.serve import _runtime

    yield _runtime.ensure_serve()
    _runtime.teardown(NAME)
    serve.shutdown()


def test_rayservice_config_runs_the_endpoint_on_serve(serve_on_ray: int) -> None:
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    endpoint = ai.Endpoint(doubler, name=NAME, route=f"/{NAME}",
                           resources=ai.Resources(cpus=0.5),
                           batching=ai.BatchingConfig(max_batch_size=4, max_wait_ms=2),
                           autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=2))
    manifest = kuberay.rayservice_manifest(endpoint, ai.KubeRayClusterConfig(name="serving"))
    config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    client = _get_global_client()
    assert client is not None
    client.deploy_apps(config)  # what the dashboard does with KubeRay's PUT of serveConfigV2
    deadline = time.monotonic() + 120
    status = "MISSING"
    while time.monotonic() < deadline:
        app = serve.status().applications.get(NAME)
        status = str(getattr(app.status, "value", app.status)) if app is not None else "MISSING"
        if status in ("RUNNING", "DEPLOY_FAILED"):
            break
        time.sleep(0.2)
    assert status == "RUNNING", serve.status().applications.get(NAME)
    app = serve.status().applications[NAME]
    assert set(app.deployments) == {f"{NAME}-ingress", f"{NAME}-model"}
    url = f"http://127.0.0.1:{serve_on_ray}/{NAME}"
    assert requests.post(url, json=21, timeout=30).json() == {"result": 42}
    # batched requests go through ainative's batcher in the replica
    answers = [requests.post(url, json=i, timeout=30).json() for i in range(5)]
    assert answers == [{"result": 2 * i} for i in range(5)]
    details = serve.status().applications[NAME].deployments[f"{NAME}-model"]
    assert str(getattr(details.status, "value", details.status)) == "HEALTHY"
