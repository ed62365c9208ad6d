"""The Serve application builder that a RayService made from an ``ai.Endpoint`` imports.

``serveConfigV2`` names ``ainative.kuberay_serve:build`` with the endpoint's
``args`` (see :mod:`ainative.cluster.kuberay.serve_config`). Serve calls :func:`build` inside
the cluster; it rebuilds the ``ai.Endpoint`` (importing its model factory by path), starts the
endpoint's metrics store, and returns the same application (ingress and model replicas, or
with ``fast_path`` the model replicas alone) that ``Endpoint.deploy()`` runs locally. The
image needs the same ainative version and the model's module. It lives beside ``apply.py`` (not
in ``cluster/``) because it imports ``serve/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ainative.cluster.kuberay import serve_config


def load(path: str) -> Any:
    module, _, attr = path.partition(":")
    value: Any = importlib.import_module(module)
    for part in attr.split("."):
        value = getattr(value, part)
    return value


def endpoint_from_args(args: Mapping[str, Any]) -> Any:
    """The ``ai.Endpoint`` that ``serve_config.endpoint_args`` described."""
    from ainative.policy.autoscaling import AutoscalingConfig
    from ainative.policy.batching import BatchingConfig
    from ainative.resources import Accelerator, Resources
    from ainative.serve.endpoint import Endpoint

    serve_config.check_args(args)
    res = dict(args["resources"])
    if res.get("accelerator"):
        res["accelerator"] = Accelerator(**res["accelerator"])
    batching = args.get("batching")
    return Endpoint(load(args["model"]), name=args["name"], route=args["route"],
                    resources=Resources(**res),
                    batching=BatchingConfig(**batching) if batching else None,
                    autoscaling=AutoscalingConfig(**args["autoscaling"]),
                    idempotent=args.get("idempotent", True),
                    max_request_bytes=args.get("max_request_bytes", 1 << 20),
                    request_timeout_s=args.get("request_timeout_s", 60.0),
                    fast_path=args.get("fast_path", False))


def build(args: dict[str, Any]) -> Any:
    """Serve application builder: ``args`` -> the endpoint's bound application."""
    from ainative.serve import _runtime

    endpoint = endpoint_from_args(args)
    _runtime.start_store(endpoint.name)
    return _runtime.build_app(endpoint, endpoint.model)
