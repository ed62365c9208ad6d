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

import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from ainative import errors
from ainative.cluster.kuberay import config as kconfig
from ainative.cluster.kuberay import naming, schema, serve_config
from ainative.cluster.kuberay.config import KubeRayClusterConfig, NodeGroupConfig
from ainative.resources import Accelerator

MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER_LABEL = "ainative.io/owner"
# Pod label naming the ainative object the pod belongs to (what the NetworkPolicy selects).
CLUSTER_LABEL = "ainative.io/cluster"
PAYLOAD_HASH = "ainative.io/payload-hash"
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


def _env(group: NodeGroupConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted((group.env or {}).items())]
    for name, ref in sorted((group.secret_env or {}).items()):
        secret, key = naming.parse_secret_ref("NodeGroupConfig", "secret_env", name, ref)
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


def _pod_template(group: NodeGroupConfig, spec: KubeRayClusterConfig, *, head: bool,
                  owner_name: str) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": f"{group.cpus:g}", "memory": group.memory}
    if group.accelerator is not None:
        limits[device_resource(group.accelerator)] = str(int(group.accelerator.count))
    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker", "image": group.image or spec.image,
        "resources": {"limits": limits, "requests": dict(limits)},
    }
    if head:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in PORTS.items()]
    env = _env(group)
    if env:
        container["env"] = env
    labels = {**(group.labels or {}), MANAGED_BY: "ainative", OWNER_LABEL: spec.owner,
              CLUSTER_LABEL: owner_name}
    return {"metadata": {"labels": labels},
            "spec": {"containers": [container], **_placement(group, spec)}}


def _group_common(group: NodeGroupConfig, spec: KubeRayClusterConfig, *, head: bool,
                  owner_name: str, dashboard_public: bool) -> dict[str, Any]:
    # KubeRay binds the dashboard (the job-submission API) on 0.0.0.0 unless told otherwise.
    params = {"dashboard-host": "0.0.0.0" if dashboard_public else "127.0.0.1"} if head else {}
    params.update(group.ray_start_params or {})
    out: dict[str, Any] = {"rayStartParams": params,
                           "template": _pod_template(group, spec, head=head,
                                                     owner_name=owner_name)}
    if group.accelerator is not None:
        out["resources"] = _ray_resources(group.accelerator)
    return out


def auth_secret_name(spec: KubeRayClusterConfig, owner_name: str) -> str | None:
    """The Secret holding the Ray token of ``owner_name``'s cluster (None: auth disabled)."""
    if spec.auth != "token":
        return None
    return spec.auth_secret or f"{owner_name}-ray-auth"


def raycluster_spec(spec: KubeRayClusterConfig, owner_name: str | None = None, *,
                    dashboard_public: bool | None = None) -> dict[str, Any]:
    """The ``spec`` of a RayCluster (also embedded in RayJobs and RayServices).

    ``owner_name`` is the top-level object (RayCluster, RayJob or RayService) the pods belong
    to; ``dashboard_public`` overrides ``spec.expose_dashboard`` where KubeRay itself must reach
    the dashboard through the head Service."""
    owner_name = owner_name or spec.name
    public = spec.expose_dashboard if dashboard_public is None else dashboard_public
    workers = []
    for group in spec.worker_groups:
        workers.append({"groupName": group.name, "replicas": group.replicas,
                        "minReplicas": group.min_replicas, "maxReplicas": group.max_replicas,
                        **_group_common(group, spec, head=False, owner_name=owner_name,
                                        dashboard_public=public)})
    head = _group_common(spec.head, spec, head=True, owner_name=owner_name,
                         dashboard_public=public)
    head["serviceType"] = spec.head_service_type
    out: dict[str, Any] = {"rayVersion": spec.ray_version, "headGroupSpec": head,
                           "workerGroupSpecs": workers}
    secret = auth_secret_name(spec, owner_name)
    out["authOptions"] = {"mode": "token", "secretName": secret} if secret else {"mode": "disabled"}
    if spec.autoscaling:
        out["enableInTreeAutoscaling"] = True
        out["autoscalerOptions"] = {"upscalingMode": "Default",
                                    "idleTimeoutSeconds": spec.idle_timeout_s}
    return out


def object_labels(spec: KubeRayClusterConfig) -> dict[str, str]:
    """Labels of the top-level object: ownership plus the gang scheduler's queue labels."""
    labels = {**(spec.labels or {}), MANAGED_BY: "ainative", OWNER_LABEL: spec.owner}
    if spec.gang_scheduler is not None and spec.queue is not None:
        for key in GANG_LABELS[spec.gang_scheduler]:
            labels[key] = spec.queue
        if spec.gang_scheduler == "yunikorn":
            labels["ray.io/gang-scheduling-enabled"] = "true"
    return labels


def _metadata(name: str, spec: KubeRayClusterConfig) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": object_labels(spec)}


def _seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """Validate, then record the hash of the spec (``submit`` compares it before adopting)."""
    schema.validate(manifest)
    manifest["metadata"]["annotations"] = {
        **manifest["metadata"].get("annotations", {}),
        PAYLOAD_HASH: naming.payload_hash(manifest["spec"])}
    return manifest


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
    return _seal(manifest)


def _import_path(fn: Any, name: str) -> str:
    """``module:qualname`` of a function that pods can import (not one defined in __main__)."""
    return serve_config.import_path(fn, name, "train_fn")


def rayjob_name(name: str) -> str:
    """A TrainJob name (letters, digits, '.', '_', '-') as a RayJob name (DNS-1035, <= 47); a
    lossy conversion gets a hash suffix of the original (``exp.1`` and ``exp_1`` differ)."""
    return naming.object_name(name, "RayJob")


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
    creates nor shuts down a cluster). The job name comes from the train job.

    On its own cluster the job is submitted by a sidecar in the head pod (``SidecarMode``: no
    submitter pod for a NetworkPolicy to admit); on an existing cluster KubeRay's submitter pod
    reaches the dashboard through the head Service (``K8sJobMode``). The operator polls the
    job's status through the dashboard, so a RayJob's dashboard listens on the pod network,
    behind the token."""
    from ainative.cluster.kuberay import entry

    spec = as_cluster_config(spec)
    env = dict(runtime_env or {})
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, Mapping):
        raise errors.ConfigError(f"runtime_env.env_vars must map names to values; got {env_vars!r}",
                                 field="runtime_env", value=env_vars)
    naming.check_plain_env("runtime_env", "env_vars", env_vars)
    if entry.is_train_job(train_job):
        # an ainative TrainJob: shipped whole, run by ainative.cluster.kuberay.entry in the cluster
        name = rayjob_name(train_job.name)
        entrypoint = f"python -m {entry.__name__}"
        env["env_vars"] = {**dict(env.get("env_vars") or {}),
                           entry.ENV_VAR: entry.encode(train_job)}
    else:
        given, entrypoint = job_entrypoint(train_job)
        name = rayjob_name(given)
    kconfig.check_name("train_job", "name", name, "RayJob")
    body: dict[str, Any] = {"entrypoint": entrypoint,
                            "submissionMode": "K8sJobMode" if cluster_selector else "SidecarMode",
                            "backoffLimit": backoff_limit}
    if cluster_selector:
        body["clusterSelector"] = dict(cluster_selector)
    else:
        body["rayClusterSpec"] = raycluster_spec(spec, name, dashboard_public=True)
        # Kueue admits the whole job and needs the cluster gone when it ends; so do we.
        body["shutdownAfterJobFinishes"] = True
        body["ttlSecondsAfterFinished"] = ttl_after_finished_s
    if env:
        body["runtimeEnvYAML"] = yaml.safe_dump(env, sort_keys=True)
    if active_deadline_s is not None:
        body["activeDeadlineSeconds"] = active_deadline_s
    manifest = {"apiVersion": schema.API_VERSION, "kind": "RayJob",
                "metadata": _metadata(name, spec), "spec": body}
    return _seal(manifest)


def serve_application(endpoint: Any, import_path: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(name, application)`` for ``serveConfigV2``.

    An ``ai.Endpoint`` without ``import_path`` becomes ainative's own application (resources,
    batching and autoscaling policy carried over; see :mod:`.serve_config`). Otherwise the
    endpoint (object or mapping) gives ``name`` and ``route`` and the application is the bound
    Serve application or builder at ``import_path`` (argument or attribute)."""
    if import_path is None and serve_config.is_endpoint(endpoint):
        return endpoint.name, serve_config.endpoint_application(endpoint)
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
        raise errors.ConfigError(
            f"endpoint {name!r} needs import_path 'module:attribute' of a bound Ray Serve "
            f"application or an application builder function (import_path= or model_factory=), "
            f"or pass an ainative.Endpoint; got {target!r}", field="import_path", value=target)
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
    """A validated RayService serving ``endpoint`` on a cluster shaped like ``spec``.

    From an ``ai.Endpoint``, ``serveConfigV2`` runs the code ``Endpoint.deploy()`` runs: each
    replica's ``ray_actor_options`` (CPUs, GPUs, the ``accelerator_type:<T>`` resource, memory),
    ainative's batching, and :class:`ainative.serve._autoscale.EndpointPolicy` as Serve's custom
    autoscaling policy by import path. The head's dashboard listens on the pod network (the
    operator polls Serve through it), behind token authentication."""
    spec = as_cluster_config(spec)
    app_name, app = serve_application(endpoint, import_path)
    name = name or naming.object_name(app_name, "RayService")
    kconfig.check_name("endpoint", "name", name, "RayService")
    body = {"serveConfigV2": yaml.safe_dump({"applications": [app]}, sort_keys=False),
            "rayClusterConfig": raycluster_spec(spec, name, dashboard_public=True)}
    manifest = {"apiVersion": schema.API_VERSION, "kind": "RayService",
                "metadata": _metadata(name, spec), "spec": body}
    return _seal(manifest)
