"""Provision Ray on Kubernetes through KubeRay: RayCluster, RayJob and RayService.

Manifests are pure functions (no API server, no ``kubernetes`` import); ``up``/``down``/``submit``/
``serve`` load the official ``kubernetes`` client on first use. This package is the only place in
ainative that imports ``kubernetes``.

::

    spec = KubeRayClusterConfig(name="research", worker_groups=[NodeGroupConfig(...)])
    raycluster_manifest(spec)             # validated dict (CRD schema + operator rules)
    rayservice_manifest(ai.Endpoint(...), spec)   # serveConfigV2 that runs Endpoint.deploy()'s app
    auth_secret_manifest(spec)            # the Secret with the Ray token (auth is on by default)
    networkpolicy_manifest(spec)          # optional: only this cluster's pods + named namespaces
    cluster = up(spec, timeout_s=900)     # create or adopt, wait for readiness
    ainative.connect(cluster)             # ray://<head svc>.<ns>.svc:10001
    down("research", namespace="ml")
"""

from __future__ import annotations

import importlib
from typing import Any

from ainative.cluster.kuberay.config import KubeRayClusterConfig as KubeRayClusterConfig
from ainative.cluster.kuberay.config import NodeGroupConfig as NodeGroupConfig
from ainative.cluster.kuberay.manifests import raycluster_manifest as raycluster_manifest
from ainative.cluster.kuberay.manifests import rayjob_manifest as rayjob_manifest
from ainative.cluster.kuberay.manifests import rayservice_manifest as rayservice_manifest
from ainative.cluster.kuberay.rbac import role_manifest as role_manifest
from ainative.cluster.kuberay.security import auth_secret_manifest as auth_secret_manifest
from ainative.cluster.kuberay.security import networkpolicy_manifest as networkpolicy_manifest
from ainative.cluster.kuberay.schema import validate as validate

# Names that need the kubernetes client: loaded on first use.
_LAZY = {
    "JobStatus": "ainative.cluster.kuberay.ops",
    "KubeRayClient": "ainative.cluster.kuberay.client",
    "KubeRayCluster": "ainative.cluster.kuberay.ops",
    "KubeRayJob": "ainative.cluster.kuberay.ops",
    "KubeRayService": "ainative.cluster.kuberay.ops",
    "PortForward": "ainative.cluster.kuberay.portforward",
    "down": "ainative.cluster.kuberay.ops",
    "serve": "ainative.cluster.kuberay.ops",
    "submit": "ainative.cluster.kuberay.ops",
    "up": "ainative.cluster.kuberay.ops",
}

__all__ = sorted(["KubeRayClusterConfig", "NodeGroupConfig", "auth_secret_manifest",
                  "networkpolicy_manifest", "raycluster_manifest", "rayjob_manifest",
                  "rayservice_manifest", "role_manifest", "validate", *_LAZY])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ainative.cluster.kuberay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
