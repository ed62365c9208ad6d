"""``KubeRayClusterConfig`` and ``NodeGroupConfig``: a Ray cluster on Kubernetes, described once.

Both are plain frozen dataclasses that validate themselves (no kubernetes import), so a YAML spec
or a notebook gets a ``ConfigError`` naming the field before anything talks to an API server.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ainative import config, errors
from ainative.cluster.kuberay import naming
from ainative.resources import Accelerator

GANG_SCHEDULERS = ("kueue", "volcano", "yunikorn")
AUTH_MODES = ("token", "disabled")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
# Ray token authentication needs Ray 2.52.0 or later (the operator refuses older versions).
MIN_AUTH_RAY = (2, 52, 0)
DNS_1035 = naming.DNS_1035
DNS_1123 = naming.DNS_1123
# A Kubernetes resource quantity such as "16Gi", "500m", "1e3", "64G".
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
MAX_NAME = naming.MAX_NAME
check_name = naming.check_name


def _check_quantity(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or not QUANTITY.match(value):
        raise errors.ConfigError(
            f"{owner}.{field} must be a Kubernetes quantity such as '16Gi' or '512Mi'; got {value!r}",
            field=field, value=value)


def _check_str_map(owner: str, field: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise errors.ConfigError(
            f"{owner}.{field} must map strings to strings (Kubernetes and rayStartParams take only "
            f"strings, e.g. {{'num-cpus': '4'}}); got {value!r}", field=field, value=value)


# Same as config.config_dataclass, spelled out so that mypy sees the dataclass fields.
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class NodeGroupConfig:
    """One group of identical Ray nodes (the head, or one worker group) as Kubernetes pods."""

    name: str = "workers"
    """Worker group name (``groupName``); ignored for the head. Names the pods, so DNS-1123."""
    cpus: float = 1
    """CPU cores per pod (container requests = limits)."""
    memory: str = "4Gi"
    """Memory per pod as a Kubernetes quantity; Ray sizes its object store from it."""
    accelerator: Accelerator | None = None
    """Accelerators per pod, e.g. ``Accelerator("H100", count=8)``; whole devices only."""
    replicas: int = 1
    """Pods to start with; the autoscaler may change it later (we never fight it)."""
    min_replicas: int | None = None
    """Autoscaling floor; None means ``replicas`` (0 lets a GPU group scale from zero)."""
    max_replicas: int | None = None
    """Autoscaling ceiling; None means ``max(replicas, min_replicas)``."""
    image: str | None = None
    """Container image for this group; None uses the cluster's image."""
    node_selector: Mapping[str, str] | None = None
    """Pod node selector; None derives one from the accelerator type, ``{}`` disables it."""
    tolerations: Sequence[Mapping[str, Any]] | None = None
    """Pod tolerations; None tolerates the accelerator's usual taint, ``[]`` disables it."""
    ray_start_params: Mapping[str, str] | None = None
    """Extra ``ray start`` parameters (strings). Resources go in the group ``resources`` field."""
    env: Mapping[str, str] | None = None
    """Extra environment variables of the Ray container (plain values; a name that says secret,
    such as ``HF_TOKEN``, is refused: use ``secret_env``)."""
    secret_env: Mapping[str, str] | None = None
    """Environment variables read from Kubernetes Secrets: ``{"HF_TOKEN": "hf-token:token"}``
    (``SECRET:KEY``), written as ``valueFrom.secretKeyRef`` so no value lands in the manifest."""
    labels: Mapping[str, str] | None = None
    """Extra pod labels (label syntax; ``ainative.io/*`` keys are reserved)."""

    def __post_init__(self) -> None:
        owner = "NodeGroupConfig"
        if not isinstance(self.name, str) or not DNS_1123.match(self.name) or len(self.name) > 63:
            raise errors.ConfigError(
                f"{owner}.name must be a DNS-1123 label such as 'h100' (lower-case letters, digits "
                f"and '-', at most 63 characters); got {self.name!r}", field="name", value=self.name)
        config.require_positive(owner, "cpus", self.cpus, maximum=config.MAX_CPUS)
        _check_quantity(owner, "memory", self.memory)
        if self.accelerator is not None:
            if not isinstance(self.accelerator, Accelerator):
                raise errors.ConfigError(
                    f"{owner}.accelerator must be an ainative.Accelerator, got {self.accelerator!r}",
                    field="accelerator", value=self.accelerator)
            if self.accelerator.fractional:
                raise errors.ConfigError(
                    f"{owner}.accelerator.count must be a whole number of devices per pod; got "
                    f"{self.accelerator.count} (share devices between workers inside Ray instead)",
                    field="accelerator", value=self.accelerator.count)
        config.require_int(owner, "replicas", self.replicas, minimum=0, maximum=config.MAX_WORKERS)
        lo = self.replicas if self.min_replicas is None else self.min_replicas
        config.require_int(owner, "min_replicas", lo, minimum=0, maximum=config.MAX_WORKERS)
        hi = max(self.replicas, lo) if self.max_replicas is None else self.max_replicas
        config.require_int(owner, "max_replicas", hi, minimum=0, maximum=config.MAX_WORKERS)
        if not lo <= self.replicas <= hi:
            raise errors.ConfigError(
                f"{owner} {self.name!r} needs min_replicas <= replicas <= max_replicas; got "
                f"{lo} <= {self.replicas} <= {hi}", field="replicas", value=self.replicas)
        object.__setattr__(self, "min_replicas", lo)
        object.__setattr__(self, "max_replicas", hi)
        for field in ("node_selector", "ray_start_params", "env", "secret_env", "labels"):
            _check_str_map(owner, field, getattr(self, field))
        naming.check_plain_env(owner, "env", self.env)
        for env_name, ref in (self.secret_env or {}).items():
            naming.parse_secret_ref(owner, "secret_env", env_name, ref)
        overlap = sorted(set(self.env or {}) & set(self.secret_env or {}))
        if overlap:
            raise errors.ConfigError(f"{owner}: {overlap} set in both env and secret_env; keep one",
                                     field="secret_env", value=overlap)
        naming.check_user_labels(owner, "labels", self.labels)
        for key, value in (self.node_selector or {}).items():
            naming.check_label_key(owner, "node_selector", key)
            naming.check_label_value(owner, f"node_selector[{key!r}]", value)
        if self.tolerations is not None:
            if not isinstance(self.tolerations, Sequence) or isinstance(
                    self.tolerations, (str, bytes)) or not all(
                    isinstance(t, Mapping) for t in self.tolerations):
                raise errors.ConfigError(
                    f"{owner}.tolerations must be a list of toleration mappings; got "
                    f"{self.tolerations!r}", field="tolerations", value=self.tolerations)
            object.__setattr__(self, "tolerations", tuple(dict(t) for t in self.tolerations))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeGroupConfig:
        """Build from a YAML mapping; ``accelerator`` may be ``{"type": "H100", "count": 8}``."""
        if not isinstance(data, Mapping):
            raise errors.ConfigError(f"a node group must be a mapping of NodeGroupConfig fields; "
                                     f"got {data!r}", field="worker_groups", value=data)
        items = dict(data)
        acc = items.get("accelerator")
        try:
            if isinstance(acc, Mapping):
                items["accelerator"] = Accelerator(**acc)
            elif isinstance(acc, str):
                items["accelerator"] = Accelerator(acc)
        except TypeError as exc:  # unknown or missing keyword
            raise errors.ConfigError(f"NodeGroupConfig.accelerator must be like {{type: H100, "
                                     f"count: 8}}; {exc}", field="accelerator", value=acc) from None
        return _construct(cls, items, "NodeGroupConfig")


# Same as config.config_dataclass, spelled out so that mypy sees the dataclass fields.
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class KubeRayClusterConfig:
    """A Ray cluster on Kubernetes through the KubeRay operator (a ``ray.io/v1`` RayCluster)."""

    name: str
    """RayCluster name: DNS-1035, at most 53 characters (KubeRay derives Service names from it)."""
    namespace: str = "default"
    """Kubernetes namespace of every object we create."""
    ray_version: str = "2.60.0"
    """Ray version in the image; KubeRay uses it to pick compatible start flags."""
    image: str = "rayproject/ray:2.60.0-py311"
    """Default container image of all groups; use a ``-gpu`` tag for GPU groups."""
    head: NodeGroupConfig = NodeGroupConfig(name="head", cpus=2, memory="8Gi")
    """The head pod. Its ``replicas`` fields are ignored: there is exactly one head."""
    worker_groups: Sequence[NodeGroupConfig] = ()
    """Worker groups; every group is kept (several GPU types in one cluster are fine)."""
    autoscaling: bool = False
    """Enable KubeRay's in-tree autoscaler between each group's min and max replicas."""
    idle_timeout_s: int = 60
    """With autoscaling: seconds a worker sits idle before the autoscaler removes it."""
    gang_scheduler: str | None = None
    """``"kueue"``, ``"volcano"``, ``"yunikorn"`` or None; sets that scheduler's labels."""
    queue: str | None = None
    """Queue name for the gang scheduler (required when ``gang_scheduler`` is set)."""
    owner: str = "ainative"
    """Value of the ``ainative.io/owner`` label: we adopt only objects carrying the same value."""
    accelerator_label: str = "nvidia.com/gpu.product"
    """Node label that the derived node selector of GPU groups uses (GPU feature discovery's)."""
    labels: Mapping[str, str] | None = None
    """Extra labels on the RayCluster object (label syntax; ``ainative.io/*`` keys are reserved)."""
    auth: str = "token"
    """Ray token authentication (``spec.authOptions.mode``): ``"token"`` (Ray >= 2.52) or
    ``"disabled"``. On by default: without it any pod that reaches the head can run code."""
    auth_secret: str | None = None
    """An existing Secret with the token under key ``auth_token``; None makes ainative create one
    (``<object name>-ray-auth``, a random token) before the Ray object that references it."""
    expose_dashboard: bool = False
    """Bind a RayCluster's dashboard (the job-submission API) on the pod network. False binds it
    to 127.0.0.1 (reach it with port-forward). RayJobs and RayServices always need it on the pod
    network: the operator polls job and Serve status through the head Service (behind the token)."""
    head_service_type: str = "ClusterIP"
    """Kubernetes type of the head Service; ``NodePort``/``LoadBalancer`` expose the client and
    dashboard ports beyond the cluster's network, so they are opt-in."""
    network_policy: bool = False
    """Also make a NetworkPolicy that admits only this cluster's own pods (and
    ``allowed_namespaces``) to its Ray pods."""
    allowed_namespaces: Sequence[str] = ()
    """With ``network_policy``: namespaces whose pods may reach the Ray pods (clients, the KubeRay
    operator's namespace for RayJobs and RayServices, whose status it polls)."""

    def __post_init__(self) -> None:
        owner = "KubeRayClusterConfig"
        check_name(owner, "name", self.name, "RayCluster")
        naming.check_namespace(owner, "namespace", self.namespace)
        for field in ("ray_version", "image", "owner", "accelerator_label"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise errors.ConfigError(f"{owner}.{field} must be a non-empty string; got "
                                         f"{value!r}", field=field, value=value)
        if not isinstance(self.head, NodeGroupConfig):
            raise errors.ConfigError(f"{owner}.head must be a NodeGroupConfig; got {self.head!r}",
                                     field="head", value=self.head)
        if not isinstance(self.worker_groups, Sequence) or isinstance(self.worker_groups, str):
            raise errors.ConfigError(f"{owner}.worker_groups must be a list of NodeGroupConfig "
                                     f"(possibly empty); got {self.worker_groups!r}",
                                     field="worker_groups", value=self.worker_groups)
        groups = tuple(self.worker_groups)
        if not all(isinstance(g, NodeGroupConfig) for g in groups):
            raise errors.ConfigError(f"{owner}.worker_groups must hold NodeGroupConfig objects; "
                                     f"got {groups!r}", field="worker_groups", value=groups)
        names = [g.name for g in groups]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise errors.ConfigError(f"{owner}.worker_groups names must be unique; {dupes} repeat",
                                     field="worker_groups", value=names)
        object.__setattr__(self, "worker_groups", groups)
        config.require_int(owner, "idle_timeout_s", self.idle_timeout_s, minimum=1,
                           maximum=int(config.MAX_DURATION_S))
        if self.gang_scheduler is not None:
            config.require_in(owner, "gang_scheduler", self.gang_scheduler, GANG_SCHEDULERS)
            if not isinstance(self.queue, str) or not self.queue:
                raise errors.ConfigError(
                    f"{owner}.queue must name the {self.gang_scheduler} queue when gang_scheduler "
                    f"is set; got {self.queue!r}", field="queue", value=self.queue)
        _check_str_map(owner, "labels", self.labels)
        naming.check_user_labels(owner, "labels", self.labels)
        naming.check_label_value(owner, "owner", self.owner)
        naming.check_label_key(owner, "accelerator_label", self.accelerator_label)
        if self.queue is not None:
            naming.check_label_value(owner, "queue", self.queue)
        self._check_security(owner)

    def _check_security(self, owner: str) -> None:
        config.require_in(owner, "auth", self.auth, AUTH_MODES)
        if self.auth == "token" and _version(self.ray_version) < MIN_AUTH_RAY:
            raise errors.ConfigError(
                f"{owner}.ray_version {self.ray_version!r} is older than 2.52.0, which Ray token "
                "authentication needs; use a newer Ray image or set auth='disabled' (not "
                "recommended: anyone who reaches the head can run code)", field="ray_version",
                value=self.ray_version)
        if self.auth_secret is not None:
            if not isinstance(self.auth_secret, str) or len(self.auth_secret) > 253 or \
                    not naming.DNS_1123_SUBDOMAIN.match(self.auth_secret):
                raise errors.ConfigError(f"{owner}.auth_secret must name a Secret (DNS-1123 "
                                         f"subdomain); got {self.auth_secret!r}",
                                         field="auth_secret", value=self.auth_secret)
        for field in ("expose_dashboard", "network_policy", "autoscaling"):
            if not isinstance(getattr(self, field), bool):
                raise errors.ConfigError(f"{owner}.{field} must be true or false; got "
                                         f"{getattr(self, field)!r}", field=field,
                                         value=getattr(self, field))
        config.require_in(owner, "head_service_type", self.head_service_type, SERVICE_TYPES)
        spaces = self.allowed_namespaces
        if not isinstance(spaces, Sequence) or isinstance(spaces, str):
            raise errors.ConfigError(f"{owner}.allowed_namespaces must be a list of namespaces; "
                                     f"got {spaces!r}", field="allowed_namespaces", value=spaces)
        for ns in spaces:
            naming.check_namespace(owner, "allowed_namespaces", ns)
        object.__setattr__(self, "allowed_namespaces", tuple(spaces))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KubeRayClusterConfig:
        """Build from a YAML mapping (the format of ``ainative up cluster.yaml``)."""
        if not isinstance(data, Mapping):
            raise errors.ConfigError(f"a KubeRay cluster spec must be a mapping; got {data!r}",
                                     field="spec", value=data)
        items = dict(data)
        if isinstance(items.get("head"), Mapping):
            items["head"] = NodeGroupConfig.from_dict({"name": "head", **items["head"]})
        groups = items.get("worker_groups")
        if isinstance(groups, Sequence) and not isinstance(groups, str):
            items["worker_groups"] = [NodeGroupConfig.from_dict(g) if isinstance(g, Mapping) else g
                                      for g in groups]
        return _construct(cls, items, "KubeRayClusterConfig")


def _version(text: str) -> tuple[int, ...]:
    """``"2.60.0"`` -> ``(2, 60, 0)``; an unparsable version counts as new enough (nightly)."""
    parts = re.findall(r"\d+", text)[:3]
    return tuple(int(p) for p in parts) if len(parts) >= 2 else (99,)


def _construct(cls: Any, items: dict[str, Any], owner: str) -> Any:
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(items) - known)
    if unknown:
        raise errors.ConfigError(f"{owner} has no field(s) {unknown}; known: {sorted(known)}",
                                 field=unknown[0], value=unknown)
    return cls(**items)
