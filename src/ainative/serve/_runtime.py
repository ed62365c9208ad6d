"""Everything that talks to Ray Serve's control plane: start, build, wait, tear down.

Serve's defaults are tuned for big clusters and hurt on small ones (PEER-BASELINES.md): 30 s
upscale delay, 10 s metric pushes, ``max_ongoing_requests=5`` capping batches, a router back-off
of up to 0.5 s after each rejection, and 1 CPU per replica. Each is set here from the endpoint's
own configuration instead.
"""

from __future__ import annotations

import math
import socket
import time
import warnings
from typing import Any

import ray
from ray import serve

from ainative import errors
from ainative.serve import _autoscale, _ingress, _metrics, _replica

NAMESPACE = "ainative"
ROUTER_ENV = {"RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S": "0.05"}


def store_name(endpoint: str) -> str:
    return f"ainative-serve-metrics:{endpoint}"


def ensure_serve() -> int:
    """Start Serve (HTTP on 127.0.0.1, a free port) unless it runs already; return its port."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
        client = _get_global_client()
    assert client is not None  # serve.start either made one or raised
    return int(client.http_config.port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_store(endpoint: str) -> Any:
    actor_cls = ray.remote(num_cpus=0, max_restarts=0)(_metrics.MetricsStore)
    return actor_cls.options(name=store_name(endpoint), namespace=NAMESPACE, lifetime="detached",
                             get_if_exists=True).remote(endpoint)


def app_exists(name: str) -> bool:
    return name in serve.status().applications


def serve_autoscaling(config: Any) -> dict[str, Any]:
    """Serve's autoscaling_config with our policy and every Serve delay at 0 (ours apply)."""
    low = 0 if config.scale_to_zero_after_s is not None else config.min_replicas
    initial = config.initial_replicas if config.initial_replicas is not None else max(
        config.min_replicas, 1)
    return {
        "min_replicas": low, "max_replicas": config.max_replicas, "initial_replicas": initial,
        "target_ongoing_requests": config.target_concurrency,
        "metrics_interval_s": config.metrics_interval_s,
        "look_back_period_s": max(2.0, 4 * config.metrics_interval_s),
        "upscale_delay_s": 0.0, "downscale_delay_s": 0.0,
        "policy": {"policy_function": _autoscale.EndpointPolicy,
                   "policy_kwargs": config.to_dict()},
    }


def build_app(endpoint: Any, model: Any) -> Any:
    """The two-deployment application: ingress -> model replicas."""
    batching, auto = endpoint.batching, endpoint.autoscaling
    spec = {"name": endpoint.name, "store_name": store_name(endpoint.name),
            "namespace": NAMESPACE, "model": model, "batching": batching,
            "latency_slo_ms": auto.latency_slo_ms, "slo_percentile": auto.slo_percentile,
            "idempotent": endpoint.idempotent, "max_request_bytes": endpoint.max_request_bytes,
            "request_timeout_s": endpoint.request_timeout_s}
    # Enough in flight per replica to fill batches; past that the router queues (and counts).
    max_batch = batching.max_batch_size if batching else 1
    max_ongoing = max(4 * max_batch, math.ceil(4 * auto.target_concurrency), 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # metrics_interval_s is deprecated
        model_dep = serve.deployment(_replica.ModelReplica).options(  # type: ignore[attr-defined]
            name=f"{endpoint.name}-model", ray_actor_options=endpoint.resources.to_ray_options(),
            max_ongoing_requests=max_ongoing, autoscaling_config=serve_autoscaling(auto),
            health_check_period_s=1.0, health_check_timeout_s=10.0,
            graceful_shutdown_wait_loop_s=0.2, graceful_shutdown_timeout_s=30.0)
    ingress_dep = serve.deployment(_ingress.Ingress).options(  # type: ignore[attr-defined]
        name=f"{endpoint.name}-ingress", num_replicas=1, max_ongoing_requests=4096,
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": ROUTER_ENV}},
        graceful_shutdown_wait_loop_s=0.2)
    return ingress_dep.bind(model_dep.bind(spec), spec)


def run(endpoint: Any, model: Any) -> None:
    serve._run(build_app(endpoint, model), _blocking=False, name=endpoint.name,
               route_prefix=endpoint.route)


def wait_running(name: str, store: Any, timeout_s: float, *, since_version: bool = False,
                 known_failures: int = 0) -> None:
    """Poll until the application is RUNNING; a replica load failure ends the wait at once.
    With ``since_version`` (a rolling update) it first waits to see the app leave RUNNING, for at
    most a few seconds (an update that changes nothing never does)."""
    start = time.monotonic()
    deadline = start + timeout_s
    seen_update = not since_version
    while True:
        failures = ray.get(store.load_failures.remote())[known_failures:]
        if failures:
            replica, trace = failures[-1]
            raise errors.ModelLoadError(
                f"endpoint {name!r}: the model failed to load in replica {replica}:\n{trace}",
                endpoint=name, replica=replica, traceback=trace)
        app = serve.status().applications.get(name)
        status = str(getattr(app.status, "value", app.status)) if app is not None else "MISSING"
        seen_update = seen_update or status != "RUNNING" or time.monotonic() - start > 5.0
        if status == "RUNNING" and seen_update:
            return
        if status in ("DEPLOY_FAILED", "UNHEALTHY") and app is not None:
            raise errors.ModelLoadError(f"endpoint {name!r} failed to deploy: {app.message}",
                                        endpoint=name, replica=None, traceback=app.message)
        if time.monotonic() > deadline:
            raise errors.ServeError(
                f"endpoint {name!r} not running after {timeout_s:g}s (status {status}); its "
                "replicas may not fit the cluster's free resources, or raise deploy(timeout_s=)",
                endpoint=name, status=status)
        time.sleep(0.1)


def replica_states(name: str) -> dict[str, int]:
    app = serve.status().applications.get(name)
    if app is None:
        return {}
    dep = app.deployments.get(f"{name}-model")
    return {str(k): int(v) for k, v in (dep.replica_states if dep else {}).items()}


def replica_actor_names(name: str) -> list[str]:
    """Names of the live replica actors of this endpoint (both deployments)."""
    prefix = f"SERVE_REPLICA::{name}#"
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix)]


def teardown(name: str, wait_s: float = 30.0) -> None:
    """Delete the application and the metrics store; wait until no replica actor is left."""
    if app_exists(name):
        serve.delete(name, _blocking=True)
    try:
        ray.kill(ray.get_actor(store_name(name), namespace=NAMESPACE))
    except ValueError:
        pass
    deadline = time.monotonic() + wait_s
    while replica_actor_names(name) and time.monotonic() < deadline:
        time.sleep(0.1)
