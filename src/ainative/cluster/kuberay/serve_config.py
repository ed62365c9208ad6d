"""An ``ai.Endpoint`` as a Ray Serve application in a RayService's ``serveConfigV2`` (pure).

::

    ai.Endpoint ──► endpoint_args()        {model: "pkg.mod:factory", resources, batching, ...}
         │                                        │ (the builder's args)
         └──► endpoint_application() ──► {import_path: ainative.kuberay_serve:build,
                                          args, deployments: [<name>-ingress, <name>-model]}
                                          (fast_path: [<name>-model] alone, no ingress)

In the cluster, Serve calls the builder with ``args``; it rebuilds the Endpoint and returns the
very application ``Endpoint.deploy()`` runs (``serve/_runtime.build_app``: ingress -> model
replicas, ainative's batching in the replica, :class:`ainative.serve._autoscale.EndpointPolicy`
as Serve's custom autoscaling policy). The ``deployments`` entries repeat each deployment's
options (resources, ``max_ongoing_requests``, autoscaling with the policy by import path) so
they are visible and reviewable in the manifest; a test checks they equal what
``build_app`` sets, so the two cannot drift apart silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ainative import errors
from ainative.policy import autoscaling

BUILDER = "ainative.kuberay_serve:build"
POLICY = "ainative.serve._autoscale:EndpointPolicy"
# Mirrors serve/_runtime.ROUTER_ENV and DRAIN_ENV_DEFAULTS (a test compares them).
ROUTER_ENV = {"RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S": "0.05"}
DRAIN_ENV_DEFAULTS = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
# Mirrors serve/_runtime.HEAD_RESOURCE: the ingress runs on the head pod, with the HTTP proxy the
# operator's Service points at (a worker pod's loss then fails only its own replicas' requests).
HEAD_RESOURCE = "node:__internal_head__"


def ingress_env() -> dict[str, str]:
    """The drain setting of an application's ingress replicas, as ``serve/_runtime.ingress_env``
    (a value in the environment that builds the manifest wins)."""
    import os

    return {key: os.environ.get(key, value) for key, value in DRAIN_ENV_DEFAULTS.items()}


def is_endpoint(obj: Any) -> bool:
    """An ``ai.Endpoint`` (duck-typed: a model factory, resources and an autoscaling config)."""
    return all(hasattr(obj, a) for a in ("model", "resources", "autoscaling", "batching", "route"))


def import_path(fn: Any, name: str, field: str) -> str:
    """``module:qualname`` of a function or class that pods can import (not from __main__)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise errors.ConfigError(
            f"{name!r}: {fn!r} is defined in __main__ or locally, so pods cannot import it; move "
            "it into a module that the image has and pass it or 'module:function'",
            field=field, value=repr(fn))
    return f"{module}:{qualname}"


def resources_args(resources: Any) -> dict[str, Any]:
    acc = resources.accelerator
    return {"cpus": resources.cpus, "memory_bytes": resources.memory_bytes,
            "accelerator": None if acc is None else {"type": acc.type, "count": acc.count},
            "custom": dict(resources.custom) if resources.custom else None}


def endpoint_args(endpoint: Any) -> dict[str, Any]:
    """What the in-cluster builder needs to rebuild ``endpoint`` (JSON-serialisable)."""
    batching = endpoint.batching
    return {
        "name": endpoint.name, "route": endpoint.route,
        "model": import_path(endpoint.model, endpoint.name, "model"),
        "resources": resources_args(endpoint.resources),
        "batching": None if batching is None else {
            "max_batch_size": batching.max_batch_size, "max_wait_ms": batching.max_wait_ms,
            "shrink_from": batching.shrink_from},
        "autoscaling": endpoint.autoscaling.to_dict(),
        "idempotent": endpoint.idempotent, "max_request_bytes": endpoint.max_request_bytes,
        "request_timeout_s": endpoint.request_timeout_s,
        "fast_path": bool(getattr(endpoint, "fast_path", False)),
    }


def ray_actor_options(resources: Any) -> dict[str, Any]:
    """Same as ``Resources.to_ray_options()``: CPUs, GPUs, the accelerator-type resource, memory."""
    opts: dict[str, Any] = dict(resources.to_ray_options())
    return opts


def serve_autoscaling(config: Any) -> dict[str, Any]:
    """Serve's ``autoscaling_config`` as ``serve/_runtime.serve_autoscaling`` builds it (one
    builder, ``policy.autoscaling``), with the policy named by import path (Serve imports it in its
    controller)."""
    return autoscaling.serve_autoscaling_config(config, POLICY)


def max_ongoing_requests(endpoint: Any) -> int:
    """Enough in flight per replica to fill batches (as ``build_app`` sets it)."""
    return autoscaling.max_ongoing_requests(
        endpoint.batching.max_batch_size if endpoint.batching else 1,
        endpoint.autoscaling.target_concurrency)


def deployments(endpoint: Any) -> list[dict[str, Any]]:
    options = ray_actor_options(endpoint.resources)
    if getattr(endpoint, "fast_path", False):      # the model replicas are the ingress
        env = {**options.get("runtime_env", {}).get("env_vars", {}), **ingress_env()}
        options = {**options, "runtime_env": {**options.get("runtime_env", {}), "env_vars": env}}
    model = {"name": f"{endpoint.name}-model",
             "ray_actor_options": options,
             "max_ongoing_requests": max_ongoing_requests(endpoint),
             "autoscaling_config": serve_autoscaling(endpoint.autoscaling),
             "health_check_period_s": 1.0, "health_check_timeout_s": 10.0,
             "graceful_shutdown_wait_loop_s": 0.2, "graceful_shutdown_timeout_s": 30.0}
    ingress = {"name": f"{endpoint.name}-ingress", "num_replicas": 1,
               "max_ongoing_requests": 4096,
               "ray_actor_options": {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.001},
                                     "runtime_env": {"env_vars": {**ROUTER_ENV,
                                                                  **ingress_env()}}},
               "graceful_shutdown_wait_loop_s": 0.2}
    if getattr(endpoint, "fast_path", False):
        return [model]      # one hop: the proxy calls the replicas, which make the edge's checks
    return [ingress, model]


def endpoint_application(endpoint: Any) -> dict[str, Any]:
    """One ``serveConfigV2`` application that runs ``endpoint`` as ``Endpoint.deploy()`` would.
    (``endpoint.queue`` is not carried: on KubeRay the gang scheduler of the cluster spec admits.)"""
    return {"name": endpoint.name, "route_prefix": endpoint.route, "import_path": BUILDER,
            "args": endpoint_args(endpoint), "deployments": deployments(endpoint)}


def check_args(args: Mapping[str, Any]) -> None:
    missing = sorted({"name", "route", "model", "resources", "autoscaling"} - set(args))
    if missing:
        raise errors.ConfigError(f"kuberay_serve args miss {missing}; build them with "
                                 "ainative.kuberay.rayservice_manifest(endpoint)",
                                 field="args", value=missing)
