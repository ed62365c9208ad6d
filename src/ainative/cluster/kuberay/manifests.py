"""Pure builders: ainative configs -> validated ``ray.io/v1`` RayCluster, RayJob and RayService dicts.

::

    KubeRayClusterConfig ──► raycluster_spec() ──► RayCluster  {headGroupSpec, workerGroupSpecs...}
      + TrainJob / dict  ──► rayjob_manifest()  ──► RayJob      {entrypoint, rayClusterSpec}
      + Endpoint         ──► rayservice_manifest() ► RayService {serveConfigV2, rayClusterConfig}
                                                       │
                                               schema.validate() (CRD + operator rules)

GPU groups put the device count in container limits (``nvidia.com/gpu``), declare the matching Ray
resources (``GPU``, ``accelerator_type:<TYPE>``) in the group's ``resources`` map so that the
autoscaler can scale the group from zero, and get a node selector and toleration from the type.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from ainative import errors
from ainative.cluster.kuberay import config as kconfig
from ainative.cluster.kuberay import schema
from ainative.cluster.kuberay.config import KubeRayClusterConfig, NodeGroupConfig
from ainative.resources import Accelerator

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER_LABEL = "ainative.io/owner"
PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000}
# Device plugin resource per vendor; everything else is NVIDIA.
_DEVICE_RESOURCE = {"MI300X": "amd.com/gpu", "MI250X": "amd.com/gpu", "MI210": "amd.com/gpu",
                    "GAUDI2": "habana.ai/gaudi", "TPU-V5E": "google.com/tpu",
                    "TPU-V4": "google.com/tpu"}
# GPU feature discovery's nvidia.com/gpu.product values of the common SKUs.
_GFD_PRODUCT = {"H100": "NVIDIA-H100-80GB-HBM3", "H200": "NVIDIA-H200", "A100": "NVIDIA-A100-SXM4-80GB",
                "L4": "NVIDIA-L4", "L40S": "NVIDIA-L40S", "A10G": "NVIDIA-A10G", "T4": "Tesla-T4",
                "V100": "Tesla-V100-SXM2-16GB", "B200": "NVIDIA-B200", "GB200": "NVIDIA-GB200"}
GANG_LABELS = {"kueue": ("kueue.x-k8s.io/queue-name",), "volcano": ("volcano.sh/queue-name",),
               "yunikorn": ("yunikorn.apache.org/queue",)}


def device_resource(acc: Accelerator) -> str:
    """The Kubernetes extended resource that a device plugin advertises for this type."""
    return _DEVICE_RESOURCE.get(acc.type, "nvidia.com/gpu")


def _ray_resources(acc: Accelerator) -> dict[str, str]:
    ray_name = "TPU" if device_resource(acc) == "google.com/tpu" else "GPU"
    return {ray_name: str(int(acc.count)), acc.resource_name: "1"}


def _placement(group: NodeGroupConfig, spec: KubeRayClusterConfig) -> dict[str, Any]:
    acc = group.accelerator
    out: dict[str, Any] = {}
    selector = group.node_selector
    if selector is None and acc is not None and device_resource(acc) == "google.com/tpu":
        raise errors.ConfigError(
            f"worker group {group.name!r} asks for {acc.type} TPUs: give node_selector with "
            "cloud.google.com/gke-tpu-accelerator and cloud.google.com/gke-tpu-topology (GKE "
            "needs both to place TPU pods)", field="node_selector", value=None)
    if selector is None and acc is not None and device_resource(acc) == "nvidia.com/gpu":
        selector = {spec.accelerator_label: _GFD_PRODUCT.get(acc.type, f"NVIDIA-{acc.type}")}
    if selector:
        out["nodeSelector"] = dict(selector)
    tolerations = group.tolerations
    if tolerations is None and acc is not None:
        tolerations = ({"key": device_resource(acc), "operator": "Exists", "effect": "NoSchedule"},)
    if tolerations:
        out["tolerations"] = [dict(t) for t in tolerations]
    return out


def _pod_template(group: NodeGroupConfig, spec: KubeRayClusterConfig, *, head: bool) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": f"{group.cpus:g}", "memory": group.memory}
    if group.accelerator is not None:
        limits[device_resource(group.accelerator)] = str(int(group.accelerator.count))
    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker", "image": group.image or spec.image,
        "resources": {"limits": limits, "requests": dict(limits)},
    }
    if head:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in PORTS.items()]
    if group.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(group.env.items())]
    labels = {MANAGED_BY: "ainative", OWNER_LABEL: spec.owner, **(group.labels or {})}
    return {"metadata": {"labels": labels},
            "spec": {"containers": [container], **_placement(group, spec)}}


def _group_common(group: NodeGroupConfig, spec: KubeRayClusterConfig, *, head: bool) -> dict[str, Any]:
    params = {"dashboard-host": "0.0.0.0"} if head else {}
    params.update(group.ray_start_params or {})
    out: dict[str, Any] = {"rayStartParams": params,
                           "template": _pod_template(group, spec, head=head)}
    if group.accelerator is not None:
        out["resources"] = _ray_resources(group.accelerator)
    return out


def raycluster_spec(spec: KubeRayClusterConfig) -> dict[str, Any]:
    """The ``spec`` of a RayCluster (also embedded in RayJobs and RayServices)."""
    workers = []
    for group in spec.worker_groups:
        workers.append({"groupName": group.name, "replicas": group.replicas,
                        "minReplicas": group.min_replicas, "maxReplicas": group.max_replicas,
                        **_group_common(group, spec, head=False)})
    out: dict[str, Any] = {"rayVersion": spec.ray_version,
                           "headGroupSpec": _group_common(spec.head, spec, head=True),
                           "workerGroupSpecs": workers}
    if spec.autoscaling:
        out["enableInTreeAutoscaling"] = True
        out["autoscalerOptions"] = {"upscalingMode": "Default",
                                    "idleTimeoutSeconds": spec.idle_timeout_s}
    return out


def object_labels(spec: KubeRayClusterConfig) -> dict[str, str]:
    """Labels of the top-level object: ownership plus the gang scheduler's queue labels."""
    labels = {MANAGED_BY: "ainative", OWNER_LABEL: spec.owner, **(spec.labels or {})}
    if spec.gang_scheduler is not None and spec.queue is not None:
        for key in GANG_LABELS[spec.gang_scheduler]:
            labels[key] = spec.queue
        if spec.gang_scheduler == "yunikorn":
            labels["ray.io/gang-scheduling-enabled"] = "true"
    return labels


def _metadata(name: str, spec: KubeRayClusterConfig) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": object_labels(spec)}


def as_cluster_config(spec: KubeRayClusterConfig | Mapping[str, Any]) -> KubeRayClusterConfig:
    """Accept a config object or its YAML mapping."""
    if isinstance(spec, KubeRayClusterConfig):
        return spec
    return KubeRayClusterConfig.from_dict(spec)


def raycluster_manifest(spec: KubeRayClusterConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A validated RayCluster manifest (pure: talks to nothing)."""
    spec = as_cluster_config(spec)
    manifest = {"apiVersion": schema.API_VERSION, "kind": "RayCluster",
                "metadata": _metadata(spec.name, spec), "spec": raycluster_spec(spec)}
    schema.validate(manifest)
    return manifest


def _import_path(fn: Any, name: str) -> str:
    """``module:qualname`` of a function that pods can import (not one defined in __main__)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise errors.ConfigError(
            f"{name!r}: {fn!r} is defined in __main__ or locally, so pods cannot import it; move "
            "it into a module that the image has and pass it or 'module:function'",
            field="train_fn", value=repr(fn))
    return f"{module}:{qualname}"


def rayjob_name(name: str) -> str:
    """A TrainJob name (letters, digits, '.', '_', '-') as a RayJob name (DNS-1035, <= 47)."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:kconfig.MAX_NAME["RayJob"]]
    text = text.rstrip("-")
    return text if text[:1].isalpha() else f"job-{text}"[:kconfig.MAX_NAME["RayJob"]].rstrip("-")


def job_entrypoint(job: Any) -> tuple[str, str]:
    """``(name, entrypoint)`` of a train job given as an object, a mapping or a string.

    - an object or mapping with ``name`` and ``entrypoint`` (a shell command) runs that command;
    - a ``train_fn`` / ``entrypoint`` of the form ``module:function`` (or a function) runs
      ``python -c "import module; module.function()"``;
    - a ``spec`` path (``*.yaml``) runs ``python -m ainative.cli.main apply <spec>``.
    """
    get = job.get if isinstance(job, Mapping) else (lambda k, d=None: getattr(job, k, d))
    name = get("name")
    if not isinstance(name, str):
        raise errors.ConfigError(f"a train job needs a string name; got {name!r}", field="name",
                                 value=name)
    target = get("entrypoint") or get("train_fn") or get("spec")
    if callable(target):
        target = _import_path(target, name)
    if not isinstance(target, str) or not target.strip():
        raise errors.ConfigError(
            f"train job {name!r} needs an entrypoint (a command), a train_fn ('module:function' "
            f"or a function) or a spec (a YAML path); got {target!r}", field="entrypoint",
            value=target)
    target = target.strip()
    if target.endswith((".yaml", ".yml")) and " " not in target:
        return name, f"python -m ainative.cli.main apply {shlex.quote(target)}"
    module, sep, func = target.partition(":")
    if sep and " " not in target and module and func.replace(".", "").isidentifier():
        code = f'import importlib; importlib.import_module("{module}").{func}()'
        return name, f"python -c {shlex.quote(code)}"
    return name, target


def rayjob_manifest(train_job: Any, spec: KubeRayClusterConfig | Mapping[str, Any], *,
                    runtime_env: Mapping[str, Any] | None = None,
                    active_deadline_s: int | None = None, ttl_after_finished_s: int = 300,
                    backoff_limit: int = 0, cluster_selector: Mapping[str, str] | None = None,
                    ) -> dict[str, Any]:
    """A validated RayJob that runs ``train_job`` on a new cluster shaped like ``spec``.

    ``train_job`` is an ``ainative.TrainJob`` (shipped whole and run by
    ``python -m ainative.cluster.kuberay.entry``), or anything :func:`job_entrypoint` takes.
    With ``cluster_selector`` the job runs on an existing cluster instead (KubeRay then neither
    creates nor shuts down a cluster). The job name comes from the train job."""
    from ainative.cluster.kuberay import entry

    spec = as_cluster_config(spec)
    env = dict(runtime_env or {})
    if entry.is_train_job(train_job):
        # an ainative TrainJob: shipped whole, run by ainative.cluster.kuberay.entry in the cluster
        name = rayjob_name(train_job.name)
        entrypoint = f"python -m {entry.__name__}"
        env["env_vars"] = {**dict(env.get("env_vars") or {}),
                           entry.ENV_VAR: entry.encode(train_job)}
    else:
        name, entrypoint = job_entrypoint(train_job)
    kconfig.check_name("train_job", "name", name, "RayJob")
    body: dict[str, Any] = {"entrypoint": entrypoint, "submissionMode": "K8sJobMode",
                            "backoffLimit": backoff_limit}
    if cluster_selector:
        body["clusterSelector"] = dict(cluster_selector)
    else:
        body["rayClusterSpec"] = raycluster_spec(spec)
        # Kueue admits the whole job and needs the cluster gone when it ends; so do we.
        body["shutdownAfterJobFinishes"] = True
        body["ttlSecondsAfterFinished"] = ttl_after_finished_s
    if env:
        body["runtimeEnvYAML"] = yaml.safe_dump(env, sort_keys=True)
    if active_deadline_s is not None:
        body["activeDeadlineSeconds"] = active_deadline_s
    manifest = {"apiVersion": schema.API_VERSION, "kind": "RayJob",
                "metadata": _metadata(name, spec), "spec": body}
    schema.validate(manifest)
    return manifest


def serve_config(endpoint: Any, import_path: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(name, application)`` for ``serveConfigV2`` from a duck-typed Endpoint or mapping.

    The endpoint gives ``name`` and ``route``; the Serve application comes from ``import_path``
    (argument or attribute): a module attribute holding a bound Serve application, or an
    application builder function (``model_factory`` may name that builder too)."""
    get = endpoint.get if isinstance(endpoint, Mapping) else (
        lambda k, d=None: getattr(endpoint, k, d))
    name = get("name")
    if not isinstance(name, str):
        raise errors.ConfigError(f"an endpoint needs a string name; got {name!r}", field="name",
                                 value=name)
    target = import_path or get("import_path") or get("model_factory")
    if callable(target):
        target = _import_path(target, name)
    if not isinstance(target, str) or ":" not in target:
        hint = (" (an ainative.Endpoint's model factory is not a Serve application: pass "
                "import_path= of one that the image holds)" if get("model") is not None else "")
        raise errors.ConfigError(
            f"endpoint {name!r} needs import_path 'module:attribute' of a bound Ray Serve "
            f"application or an application builder function (import_path= or model_factory=); "
            f"got {target!r}{hint}", field="import_path", value=target)
    route = get("route") or f"/{name}"
    if not isinstance(route, str) or not route.startswith("/"):
        raise errors.ConfigError(f"endpoint {name!r} route must start with '/'; got {route!r}",
                                 field="route", value=route)
    app: dict[str, Any] = {"name": name, "route_prefix": route, "import_path": target}
    args = get("args")
    if args:
        app["args"] = dict(args)
    return name, app


def rayservice_manifest(endpoint: Any, spec: KubeRayClusterConfig | Mapping[str, Any], *,
                        name: str | None = None, import_path: str | None = None) -> dict[str, Any]:
    """A validated RayService serving ``endpoint`` on a cluster shaped like ``spec``."""
    spec = as_cluster_config(spec)
    app_name, app = serve_config(endpoint, import_path)
    name = name or app_name
    kconfig.check_name("endpoint", "name", name, "RayService")
    body = {"serveConfigV2": yaml.safe_dump({"applications": [app]}, sort_keys=False),
            "rayClusterConfig": raycluster_spec(spec)}
    manifest = {"apiVersion": schema.API_VERSION, "kind": "RayService",
                "metadata": _metadata(name, spec), "spec": body}
    schema.validate(manifest)
    return manifest
