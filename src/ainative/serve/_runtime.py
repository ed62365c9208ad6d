"""Everything that talks to Ray Serve's control plane: start, build, wait, tear down.

Serve's defaults are tuned for big clusters and hurt on small ones (PEER-BASELINES.md): 30 s
upscale delay, 10 s metric pushes, ``max_ongoing_requests=5`` capping batches, a router back-off
of up to 0.5 s after each rejection, and 1 CPU per replica. Each is set here from the endpoint's
own configuration instead.
"""

from __future__ import annotations

import logging
import socket
import time
import warnings
from typing import Any

import ray
from ray import serve

from ainative import errors
from ainative.policy import autoscaling
from ainative.serve import _autoscale, _fastpath, _ingress, _metrics, _replica

log = logging.getLogger("ainative.serve")
NAMESPACE = "ainative"
ROUTER_ENV = {"RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S": "0.05"}
HEAD_RESOURCE = "node:__internal_head__"   # the ingress and the metrics store live on the head
# Serve's controller gives a new HTTP proxy 5 s to answer its ready check and kills it after three
# misses; on a saturated node a proxy's process can take longer than that to import, and
# serve.start() then dies with "ProxyActor ... killed by ray.kill". 30 s each (a variable already
# set in the environment wins); a stuck proxy is still replaced, only later.
# In Serve's throughput-optimized mode (direct ingress) an application's ingress replica is held
# open RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S (30 s) after it is told to stop, so that an
# external load balancer sending to the replica's own port can deregister it, and the controller
# waits that long before it force-kills. Nothing outside Serve is pointed at our replicas' ports:
# requests come through Serve's proxy, which drops a stopping replica as soon as the controller
# says so, and the drain still waits for every request in flight. 30 s made each delete of an
# endpoint take 31 s and kept a scaled-down one-hop replica (and its accelerator) for 30 s more.
# 2 s covers a request already routed when the replica stopped; a variable already set in the
# environment wins (someone with a load balancer on replica ports).
DRAIN_ENV_DEFAULTS = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
CONTROLLER_ENV_DEFAULTS = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
                           "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30", **DRAIN_ENV_DEFAULTS}
PROXY_START_TIMEOUT_S = 180.0
PORT_ATTEMPTS = 3      # a free port can be taken before Serve's proxy binds it


def store_name(endpoint: str) -> str:
    return f"ainative-serve-metrics:{endpoint}"


_CLIENT_CLUSTER: list[str] = []    # the GCS address Serve's cached controller handle belongs to


def forget_other_clusters() -> None:
    """Drop Serve's cached controller handle when the driver now talks to another Ray cluster.

    Serve keys that cache by the driver's job id, and the first driver of every new cluster is
    job ``01000000``; so after ``ray.shutdown()`` and ``ray.init()`` (a notebook restart, a test
    module with its own cluster) Serve reuses the old cluster's controller handle and every call
    fails with "Can't find actor ... from a different cluster". Called before each Serve call."""
    from ray.serve import context

    here = ray.get_runtime_context().gcs_address
    if _CLIENT_CLUSTER != [here]:
        context._set_global_client(None)        # Serve finds this cluster's controller by name
        _CLIENT_CLUSTER[:] = [here]


def _running_client() -> Any:
    """This cluster's Serve client, or None when no Serve controller runs (starts nothing)."""
    from ray.serve.context import _get_global_client

    forget_other_clusters()
    return _get_global_client(raise_if_no_controller_running=False)


def ensure_serve() -> int:
    """Start Serve (HTTP on 127.0.0.1, a free port) unless it runs already; return its port."""
    from ray.serve.context import _get_global_client

    client = _running_client()
    for attempt in range(1, PORT_ATTEMPTS + 1):
        if client is not None:
            break
        port = _free_port()
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port},
                        controller_options={"runtime_env": {"env_vars": controller_env()}})
        except ray.exceptions.ActorDiedError as exc:
            # The controller replaced a proxy that missed its checks; the replacement is what
            # serves. Anything else that died (the controller itself) is not ours to wait out.
            if "ProxyActor" not in str(exc):
                raise
            _wait_for_proxy(PROXY_START_TIMEOUT_S)
        except ray.exceptions.RayTaskError as exc:
            # The port was free when we picked it and taken before the proxy bound it (another
            # process's connection got it as its local port: seen on a busy machine). Serve keeps
            # its first http_options, so shut it down and start again on another port.
            if "Failed to bind" not in str(exc) or attempt == PORT_ATTEMPTS:
                raise
            log.warning("Serve's HTTP proxy could not bind 127.0.0.1:%d (taken meanwhile); "
                        "starting Serve again on another port", port)
            serve.shutdown()
            continue
        client = _get_global_client()
    assert client is not None  # serve.start either made one or raised
    return int(client.http_config.port)


def _env_or(defaults: dict[str, str]) -> dict[str, str]:
    """``defaults``, each replaced by the caller's environment where it sets the variable."""
    import os

    return {key: os.environ.get(key, value) for key, value in defaults.items()}


def controller_env() -> dict[str, str]:
    """Environment for Serve's controller: CONTROLLER_ENV_DEFAULTS unless the caller set them."""
    return _env_or(CONTROLLER_ENV_DEFAULTS)


def ingress_env() -> dict[str, str]:
    """Environment for an application's ingress replicas (the ingress deployment, or the model
    replicas on the one-hop path): DRAIN_ENV_DEFAULTS unless the caller set them."""
    return _env_or(DRAIN_ENV_DEFAULTS)


def _wait_for_proxy(timeout_s: float) -> None:
    """Wait until Serve reports a healthy HTTP proxy (ServeError after ``timeout_s``)."""
    deadline, last = time.monotonic() + timeout_s, "no proxy yet"
    while time.monotonic() < deadline:
        try:
            proxies = serve.status().proxies
        except Exception as exc:  # controller still coming up
            last = repr(exc)
        else:
            if "HEALTHY" in proxies.values():     # ProxyStatus is a str enum
                return
            last = f"proxies {dict(proxies)}"
        time.sleep(0.5)
    raise errors.ServeError(
        f"Serve's HTTP proxy was not healthy {timeout_s:.0f} s after start ({last}); the node "
        f"is likely saturated: free CPU, or raise RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_store(endpoint: str, latency_slo_ms: float | None = None) -> Any:
    actor_cls = ray.remote(num_cpus=0, max_restarts=0)(_metrics.MetricsStore)
    return actor_cls.options(name=store_name(endpoint), namespace=NAMESPACE, lifetime="detached",
                             get_if_exists=True, resources={HEAD_RESOURCE: 0.001}).remote(
                                 endpoint, latency_slo_ms)


def app_exists(name: str) -> bool:
    """Whether Serve runs an application ``name``; False (without starting Serve) when no Serve
    controller runs on this cluster."""
    return _running_client() is not None and name in serve.status().applications


def serve_autoscaling(config: Any, capacity: tuple[str, int] | None = None) -> dict[str, Any]:
    """Serve's autoscaling_config with our policy and every Serve delay at 0 (ours apply).
    ``capacity``: (board name, replicas admitted) when admission caps the policy."""
    kwargs: dict[str, Any] = config.to_dict()
    initial = None
    if capacity is not None:
        kwargs.update(ainative_board=capacity[0], ainative_cap=capacity[1])
        low = 0 if config.scale_to_zero_after_s is not None else config.min_replicas
        initial = max(low, capacity[1])      # what deploy() got admitted
    return autoscaling.serve_autoscaling_config(config, _autoscale.EndpointPolicy,
                                                policy_kwargs=kwargs, initial_replicas=initial)


def build_app(endpoint: Any, model: Any, capacity: tuple[str, int] | None = None) -> Any:
    """The application: ingress -> model replicas, or with ``endpoint.fast_path`` the model
    replicas alone, each its own edge (one hop). ``capacity``: see ``serve_autoscaling``;
    replicas then report their accelerator utilisation to that board."""
    batching, auto = endpoint.batching, endpoint.autoscaling
    spec = {"name": endpoint.name, "store_name": store_name(endpoint.name),
            "namespace": NAMESPACE, "model": model, "batching": batching,
            "latency_slo_ms": auto.latency_slo_ms, "slo_percentile": auto.slo_percentile,
            "shed_over_slo": auto.shed_over_slo,
            "idempotent": endpoint.idempotent, "max_request_bytes": endpoint.max_request_bytes,
            "request_timeout_s": endpoint.request_timeout_s,
            "auth_digest": endpoint.auth.digest() if endpoint.auth is not None else None,
            "board_name": capacity[0] if capacity is not None else None}
    max_ongoing = autoscaling.max_ongoing_requests(batching.max_batch_size if batching else 1,
                                                   auto.target_concurrency)
    body = _fastpath.FastReplica if endpoint.fast_path else _replica.ModelReplica
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # metrics_interval_s is deprecated
        model_dep = serve.deployment(body).options(  # type: ignore[attr-defined]
            name=f"{endpoint.name}-model",
            ray_actor_options=_replica_options(endpoint, ingress=endpoint.fast_path),
            max_ongoing_requests=max_ongoing, autoscaling_config=serve_autoscaling(auto, capacity),
            health_check_period_s=1.0, health_check_timeout_s=10.0,
            graceful_shutdown_wait_loop_s=0.2, graceful_shutdown_timeout_s=30.0)
    if endpoint.fast_path:
        return model_dep.bind(spec)
    ingress_dep = serve.deployment(_ingress.Ingress).options(  # type: ignore[attr-defined]
        name=f"{endpoint.name}-ingress", num_replicas=1, max_ongoing_requests=4096,
        # On the head, with the HTTP proxy it answers for: a single ingress on a worker node made
        # that node's partition fail every request, not only the ones in flight there (tests/faults).
        ray_actor_options={"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001},
                           "runtime_env": {"env_vars": {**ROUTER_ENV, **ingress_env()}}},
        graceful_shutdown_wait_loop_s=0.2)
    return ingress_dep.bind(model_dep.bind(spec), spec)


def _replica_options(endpoint: Any, ingress: bool = False) -> dict[str, Any]:
    """The replica's Ray options; the driver's utilisation probe choice travels with it, and the
    drain setting when the replica is the application's ingress (the one-hop path)."""
    import os

    from ainative.cost import probes

    options = endpoint.resources.to_ray_options()
    extra = dict(ingress_env()) if ingress else {}
    probe = os.environ.get(probes.PROBE_ENV)
    if probe:
        extra[probes.PROBE_ENV] = probe
    if extra:
        env = {**options.get("runtime_env", {}).get("env_vars", {}), **extra}
        options["runtime_env"] = {**options.get("runtime_env", {}), "env_vars": env}
    return options


def run(endpoint: Any, model: Any, capacity: tuple[str, int] | None = None) -> None:
    serve._run(build_app(endpoint, model, capacity), _blocking=False, name=endpoint.name,
               route_prefix=endpoint.route)


def wait_running(name: str, store: Any, timeout_s: float, *, since_version: bool = False,
                 known_failures: int = 0) -> None:
    """Poll until the application is RUNNING; a replica load failure ends the wait at once.
    With ``since_version`` (a rolling update) it first waits to see the app leave RUNNING, for at
    most a few seconds (an update that changes nothing never does)."""
    forget_other_clusters()
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
    forget_other_clusters()
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
