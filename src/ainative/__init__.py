"""ainative: the AI-native control plane as a library, on Ray, beside Kubernetes.

Only public names live here, loaded lazily (PEP 562) so that ``import ainative`` stays fast and
pulls in neither Ray, torch, Ray Serve nor the kubernetes client.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module" (a submodule) or "module:attribute"
_EXPORTS: dict[str, str] = {
    "Accelerator": "ainative.resources:Accelerator",
    "AinativeError": "ainative.errors:AinativeError",
    "AutoscalingConfig": "ainative.policy.autoscaling:AutoscalingConfig",
    "BatchingConfig": "ainative.policy.batching:BatchingConfig",
    "Budget": "ainative.policy.pricing:Budget",
    "CheckpointConfig": "ainative.train.config:CheckpointConfig",
    "Cluster": "ainative.cluster.local:Cluster",
    "ConfigError": "ainative.errors:ConfigError",
    "Endpoint": "ainative.serve.endpoint:Endpoint",
    "EndpointHandle": "ainative.serve.endpoint:EndpointHandle",
    "FailureConfig": "ainative.train.config:FailureConfig",
    "IdlePolicy": "ainative.policy.pricing:IdlePolicy",
    "InfeasibleError": "ainative.errors:InfeasibleError",
    "KubeRayClusterConfig": "ainative.cluster.kuberay.config:KubeRayClusterConfig",
    "NodeGroupConfig": "ainative.cluster.kuberay.config:NodeGroupConfig",
    "PlacementTimeoutError": "ainative.errors:PlacementTimeoutError",
    "PolicyConfig": "ainative.policy.knobs:PolicyConfig",
    "PriceTable": "ainative.policy.pricing:PriceTable",
    "Queue": "ainative.policy.queues:Queue",
    "Resources": "ainative.resources:Resources",
    "TokenAuth": "ainative.serve.auth:TokenAuth",
    "TrainJob": "ainative.train.job:TrainJob",
    "TrainResult": "ainative.train.result:TrainResult",
    "connect": "ainative.cluster.local:connect",
    "cost": "ainative.cost",
    "data": "ainative.data",
    "errors": "ainative.errors",
    "kuberay": "ainative.cluster.kuberay",
    "scheduling": "ainative.scheduling",
    "simulate": "ainative.sim:simulate",
    "train": "ainative.train",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'ainative' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
