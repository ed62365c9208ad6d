"""``up`` / ``down`` / ``submit`` / ``serve``: apply validated manifests, adopt our own, wait.

::

    config ──► manifest (validated) ──► create ──201──► wait (watch conditions) ──► handle
                                          │409
                                          ▼
                           get: our owner label? ──no──► KubeRayConflictError
                                          │yes
                           JSON patch of the fields we own (never replicas / workersToDelete,
                           which the autoscaler owns), guarded by resourceVersion ──► wait
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from ainative import errors
from ainative.cluster.kuberay import manifests, schema, security, wait
from ainative.cluster.kuberay.client import KubeRayClient
from ainative.cluster.kuberay.config import KubeRayClusterConfig
from ainative.cluster.kuberay.portforward import PortForward

logger = logging.getLogger(__name__)
# Worker-group fields that the autoscaler writes; we keep whatever the live object has.
AUTOSCALER_FIELDS = ("replicas", "scaleStrategy")
CLUSTER_SPEC_KEY = {"RayCluster": None, "RayService": "rayClusterConfig", "RayJob": "rayClusterSpec"}
_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """The object as the server returned it, and whether we created it or adopted it."""

    object: dict[str, Any]
    created: bool
    patched: bool


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _keep_autoscaler_fields(desired: dict[str, Any], live: Mapping[str, Any]) -> None:
    live_groups = {g.get("groupName"): g for g in live.get("workerGroupSpecs") or []}
    for group in desired.get("workerGroupSpecs") or []:
        current = live_groups.get(group.get("groupName"))
        if current is None:
            continue
        for field in AUTOSCALER_FIELDS:
            if field in current:
                group[field] = current[field]
            else:
                group.pop(field, None)


def owned_patch(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch ops that bring ``live`` to ``desired`` on the fields we own, guarded by
    resourceVersion (a concurrent writer makes the server answer 409 and we re-read)."""
    kind = desired["kind"]
    want = schema.fill_defaults(copy.deepcopy(dict(desired["spec"])),
                                schema.crd_schema(kind)["properties"]["spec"])
    have = live.get("spec") or {}
    key = CLUSTER_SPEC_KEY[kind]
    if key is None:
        _keep_autoscaler_fields(want, have)
    elif isinstance(want.get(key), dict):
        _keep_autoscaler_fields(want[key], have.get(key) or {})
    ops: list[dict[str, Any]] = []
    for field, value in want.items():
        if have.get(field) != value:
            ops.append({"op": "add" if field not in have else "replace",
                        "path": f"/spec/{_escape(field)}", "value": value})
    for field in ("labels", "annotations"):
        current = (live.get("metadata") or {}).get(field)
        wanted = desired["metadata"].get(field) or {}
        if current is None and wanted:
            ops.append({"op": "add", "path": f"/metadata/{field}", "value": dict(wanted)})
            continue
        for key, value in wanted.items():
            if (current or {}).get(key) != value:
                ops.append({"op": "add", "path": f"/metadata/{field}/{_escape(key)}",
                            "value": value})
    if ops:
        rv = live["metadata"]["resourceVersion"]
        ops.insert(0, {"op": "replace", "path": "/metadata/resourceVersion", "value": rv})
    return ops


def _check_owner(desired: Mapping[str, Any], live: Mapping[str, Any]) -> None:
    want = desired["metadata"]["labels"].get(manifests.OWNER_LABEL)
    labels = (live.get("metadata") or {}).get("labels") or {}
    have = labels.get(manifests.OWNER_LABEL)
    if labels.get(manifests.MANAGED_BY) != "ainative" or have != want:
        meta = desired["metadata"]
        raise errors.KubeRayConflictError(
            f"{desired['kind']} {meta['namespace']}/{meta['name']} exists and is not ours to adopt "
            f"(label {manifests.OWNER_LABEL}={have!r}, {manifests.MANAGED_BY}="
            f"{labels.get(manifests.MANAGED_BY)!r}; we are {want!r}). Choose another name, or set "
            "owner= to the owner it has", kind=desired["kind"], name=meta["name"], owner=have)


def apply(client: KubeRayClient, manifest: Mapping[str, Any]) -> Applied:
    """Create ``manifest``, or adopt the existing object with our owner label and patch it.
    A manifest with ``generateName`` and no ``name`` always makes a new object."""
    schema.validate(manifest)
    kind, meta = manifest["kind"], manifest["metadata"]
    if not meta.get("name"):
        return Applied(client.create(manifest), created=True, patched=False)
    for _ in range(_ATTEMPTS):
        try:
            return Applied(client.create(manifest), created=True, patched=False)
        except errors.KubeRayConflictError:
            pass
        live = client.get(kind, meta["namespace"], meta["name"])
        if live is None:
            continue  # deleted between our create and our get: create again
        _check_owner(manifest, live)
        ops = owned_patch(manifest, live)
        if not ops:
            return Applied(live, created=False, patched=False)
        try:
            obj = client.json_patch(kind, meta["namespace"], meta["name"], ops)
            logger.info("adopted %s %s/%s and patched %d field(s)", kind, meta["namespace"],
                        meta["name"], len(ops) - 1)
            return Applied(obj, created=False, patched=True)
        except errors.KubeRayConflictError:
            continue  # someone (the autoscaler) wrote in between: re-read and re-diff
    raise errors.KubeRayConflictError(
        f"{kind} {meta['namespace']}/{meta['name']} kept changing under us ({_ATTEMPTS} tries); "
        "retry later", kind=kind, name=meta["name"])


def check_companions(client: KubeRayClient, spec: KubeRayClusterConfig, owner_name: str) -> None:
    """Before creating anything: refuse if a Secret or NetworkPolicy we would make exists and
    is not ours (we would otherwise point a cluster at someone else's token)."""
    for companion in security.companions(spec, owner_name):
        kind, cmeta = companion["kind"], companion["metadata"]
        _check_companion_owner(spec, kind, cmeta,
                               client.get_companion(kind, cmeta["namespace"], cmeta["name"]))


def _check_companion_owner(spec: KubeRayClusterConfig, kind: str, cmeta: Mapping[str, Any],
                           live: Mapping[str, Any] | None) -> None:
    if live is None:
        return
    labels = (live.get("metadata") or {}).get("labels") or {}
    if labels.get(manifests.OWNER_LABEL) != spec.owner:
        hint = " or set auth_secret to use it" if kind == "Secret" else ""
        raise errors.KubeRayConflictError(
            f"{kind} {cmeta['namespace']}/{cmeta['name']} exists and is not ours (label "
            f"{manifests.OWNER_LABEL}={labels.get(manifests.OWNER_LABEL)!r}, we are "
            f"{spec.owner!r}); delete it{hint}", kind=kind, name=cmeta["name"])


def ensure_companions(client: KubeRayClient, spec: KubeRayClusterConfig,
                      owner: Mapping[str, Any]) -> list[str]:
    """Create the auth Secret and NetworkPolicy of ``owner`` (the live Ray object) unless they
    exist; they carry an ownerReference to it, so Kubernetes deletes them with it. An existing
    one of ours is kept as is (a token is never rotated under running pods); one that is not
    ours is refused. Returns ``Kind/name`` of each object created."""
    meta = owner["metadata"]
    ref = {"apiVersion": schema.API_VERSION, "kind": owner["kind"], "name": meta["name"],
           "uid": meta["uid"]}
    made = []
    for companion in security.companions(spec, meta["name"]):
        kind, cmeta = companion["kind"], companion["metadata"]
        live = client.get_companion(kind, cmeta["namespace"], cmeta["name"])
        if live is None:
            companion["metadata"]["ownerReferences"] = [ref]
            try:
                client.create_companion(companion)
                made.append(f"{kind}/{cmeta['name']}")
                continue
            except errors.KubeRayConflictError:  # made in between: check it like any other
                live = client.get_companion(kind, cmeta["namespace"], cmeta["name"])
        _check_companion_owner(spec, kind, cmeta, live)
    if made:
        logger.info("created %s for %s %s/%s", ", ".join(made), owner["kind"], meta["namespace"],
                    meta["name"])
    return made


class KubeRayCluster:
    """A ready RayCluster: ``ai.connect(cluster)`` joins it through ``.address``."""

    def __init__(self, obj: Mapping[str, Any], *, created: bool, client: KubeRayClient) -> None:
        meta, status = obj["metadata"], obj.get("status") or {}
        self.name: str = meta["name"]
        self.namespace: str = meta["namespace"]
        self.created = created
        self.status: dict[str, Any] = dict(status)
        self.head_service: str = (status.get("head") or {}).get("serviceName") or \
            f"{self.name}-head-svc"
        self.endpoints: dict[str, str] = dict(status.get("endpoints") or {})
        self.auth_options: dict[str, Any] = dict((obj.get("spec") or {}).get("authOptions") or {})
        self._client = client

    def _port(self, key: str, default: int) -> int:
        value = self.endpoints.get(key)
        return int(value) if value and str(value).isdigit() else default

    @property
    def host(self) -> str:
        return f"{self.head_service}.{self.namespace}.svc"

    @property
    def address(self) -> str:
        """Ray client address, reachable from inside the Kubernetes cluster."""
        return f"ray://{self.host}:{self._port('client', 10001)}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self._port('dashboard', 8265)}"

    def port_forward(self, *, timeout_s: float = 30.0, kubectl: str = "kubectl") -> PortForward:
        """Forward the client and dashboard ports to 127.0.0.1 (for use outside the cluster)."""
        return PortForward.start(self.namespace, self.head_service,
                                 {"client": self._port("client", 10001),
                                  "dashboard": self._port("dashboard", 8265)},
                                 timeout_s=timeout_s, kubectl=kubectl)

    @property
    def auth_secret(self) -> str | None:
        """The Secret holding the Ray token (key ``auth_token``), or None without token auth."""
        if self.auth_options.get("mode") != "token":
            return None
        return str(self.auth_options.get("secretName") or self.name)

    def auth_env(self) -> dict[str, str]:
        """What a Ray client needs to join this cluster with token auth: set these environment
        variables before ``ai.connect(cluster)`` (empty without token auth)."""
        import base64

        name = self.auth_secret
        if name is None:
            return {}
        secret = self._client.get_companion("Secret", self.namespace, name)
        data = (secret or {}).get("data") or {}
        if security.TOKEN_KEY not in data:
            raise errors.KubeRayError(
                f"RayCluster {self.namespace}/{self.name} uses token auth but Secret {name!r} has "
                f"no key {security.TOKEN_KEY!r}", kind="Secret", name=name)
        token = base64.b64decode(data[security.TOKEN_KEY]).decode()
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}

    def __repr__(self) -> str:
        return f"KubeRayCluster({self.namespace}/{self.name}, address={self.address!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatus:
    """Terminal state of a RayJob as KubeRay reported it."""

    name: str
    deployment_status: str
    job_status: str
    reason: str
    message: str

    @property
    def succeeded(self) -> bool:
        return self.deployment_status == "Complete" and self.job_status == "SUCCEEDED"


class KubeRayJob:
    """A submitted RayJob; ``wait()`` returns its terminal :class:`JobStatus`."""

    def __init__(self, name: str, namespace: str, client: KubeRayClient, *, created: bool) -> None:
        self.name, self.namespace, self.created, self._client = name, namespace, created, client
        # The last object observed: a RayJob deleted after completion (TTL) still has a result.
        self._last: dict[str, Any] | None = None

    def status(self) -> JobStatus | None:
        """The job's current status, or the last one observed if it was deleted since."""
        obj = self._client.get("RayJob", self.namespace, self.name)
        if obj is not None:
            self._last = obj
        return self._as_status(self._last) if self._last is not None else None

    def wait(self, timeout_s: float = 3600.0) -> JobStatus:
        """Block until jobDeploymentStatus is Complete, Failed or ValidationFailed."""
        obj = wait.wait_for(self._client, "RayJob", self.namespace, self.name, timeout_s,
                            tolerate_deleted=True, last_seen=self._last)
        self._last = obj
        return self._as_status(obj)

    def _as_status(self, obj: Mapping[str, Any]) -> JobStatus:
        status = obj.get("status") or {}
        return JobStatus(self.name, status.get("jobDeploymentStatus", ""),
                         status.get("jobStatus", ""), status.get("reason", ""),
                         status.get("message", ""))

    def __repr__(self) -> str:
        return f"KubeRayJob({self.namespace}/{self.name})"


def _client(client: KubeRayClient | None) -> KubeRayClient:
    return client if client is not None else KubeRayClient()


def _wait_or_release(kc: KubeRayClient, manifest: Mapping[str, Any], applied: Applied,
                     timeout_s: float, delete_on_failure: bool) -> dict[str, Any]:
    """Wait for readiness; if that fails and we created the object, delete it before raising
    (a half-up GPU cluster costs money), unless the caller keeps it for debugging."""
    kind, meta = manifest["kind"], manifest["metadata"]
    try:
        return wait.wait_for(kc, kind, meta["namespace"], meta["name"], timeout_s)
    except errors.KubeRayError as exc:
        if applied.created and delete_on_failure:
            try:
                kc.delete(kind, meta["namespace"], meta["name"])
                exc.message += (f" [deleted the {kind} we created; pass delete_on_failure=False "
                                "to keep it for debugging]")
                exc.args = (exc.message,)
            except errors.KubeRayError as cleanup:
                logger.warning("could not delete %s %s/%s after a failure: %s", kind,
                               meta["namespace"], meta["name"], cleanup)
        raise


def up(spec: KubeRayClusterConfig | Mapping[str, Any], *, timeout_s: float = 900.0,
       delete_on_failure: bool = True, client: KubeRayClient | None = None) -> KubeRayCluster:
    """Create (or adopt) the RayCluster, wait until it is ready, and return it.

    If it does not become ready (a fatal condition or ``timeout_s``), a cluster that this call
    created is deleted before the error is raised; an adopted one is left alone."""
    spec = manifests.as_cluster_config(spec)
    manifest = manifests.raycluster_manifest(spec)
    kc = _client(client)
    check_companions(kc, spec, spec.name)
    applied = apply(kc, manifest)
    ensure_companions(kc, spec, applied.object)
    obj = _wait_or_release(kc, manifest, applied, timeout_s, delete_on_failure)
    return KubeRayCluster(obj, created=applied.created, client=kc)


def down(name: str, namespace: str = "default", *, kind: str = "RayCluster",
         owner: str = "ainative", force: bool = False, timeout_s: float = 120.0,
         client: KubeRayClient | None = None) -> bool:
    """Delete our RayCluster (or RayJob / RayService) and wait until it is gone.

    Returns False when there was nothing to delete. Objects without our owner label are refused
    unless ``force``."""
    if kind not in schema.PLURALS:
        raise errors.ConfigError(f"kind must be one of {sorted(schema.PLURALS)}; got {kind!r}",
                                 field="kind", value=kind)
    kc = _client(client)
    live = kc.get(kind, namespace, name)
    if live is None:
        return False
    labels = (live.get("metadata") or {}).get("labels") or {}
    if not force and labels.get(manifests.OWNER_LABEL) != owner:
        raise errors.KubeRayConflictError(
            f"{kind} {namespace}/{name} is not ours (label {manifests.OWNER_LABEL}="
            f"{labels.get(manifests.OWNER_LABEL)!r}, expected {owner!r}); pass force=True to "
            "delete it anyway", kind=kind, name=name)
    if not kc.delete(kind, namespace, name):
        return False
    _wait_gone(kc, kind, namespace, name, timeout_s)
    return True


def _wait_gone(kc: KubeRayClient, kind: str, namespace: str, name: str, timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while (live := kc.get(kind, namespace, name)) is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.KubeRayTimeoutError(
                f"{kind} {namespace}/{name} still exists {timeout_s:g} s after delete (finalizers: "
                f"{live['metadata'].get('finalizers')})", kind=kind, name=name,
                last_status=live.get("status"))
        rv = live["metadata"].get("resourceVersion")
        for event_type, _ in kc.watch(kind, namespace, name, rv, min(left, 10.0)):
            if event_type == "DELETED":
                return


def submit(train_job: Any, cluster_spec: KubeRayClusterConfig | Mapping[str, Any], *,
           client: KubeRayClient | None = None, **rayjob_options: Any) -> KubeRayJob:
    """Submit ``train_job`` as a RayJob on a new cluster shaped like ``cluster_spec``.

    ``rayjob_options`` go to :func:`rayjob_manifest` (runtime_env, active_deadline_s, ...).

    An existing RayJob of that name is adopted only if it is ours (owner label) and carries the
    same payload hash (annotation ``ainative.io/payload-hash``, the hash of the manifest's spec):
    a resubmission of the same job. Anything else raises KubeRayConflictError naming the fix."""
    spec = manifests.as_cluster_config(cluster_spec)
    manifest = manifests.rayjob_manifest(train_job, spec, **rayjob_options)
    kc = _client(client)
    meta = manifest["metadata"]
    check_companions(kc, spec, meta["name"])
    try:
        live = kc.create(manifest)
        created = True
    except errors.KubeRayConflictError:
        existing = kc.get("RayJob", meta["namespace"], meta["name"])
        if existing is None:
            raise
        _check_owner(manifest, existing)
        _check_payload(manifest, existing)
        live, created = existing, False
    ensure_companions(kc, spec, live)
    return KubeRayJob(live["metadata"]["name"], meta["namespace"], kc, created=created)


def _check_payload(desired: Mapping[str, Any], live: Mapping[str, Any]) -> None:
    key = manifests.PAYLOAD_HASH
    want = desired["metadata"]["annotations"][key]
    have = ((live.get("metadata") or {}).get("annotations") or {}).get(key)
    if have != want:
        meta = desired["metadata"]
        raise errors.KubeRayConflictError(
            f"{desired['kind']} {meta['namespace']}/{meta['name']} exists with another payload "
            f"(annotation {key}={have!r}, this submission is {want!r}): it is a different job, "
            f"not a resubmission of this one. Delete it (`ainative down {meta['name']} --kind "
            f"{desired['kind']} -n {meta['namespace']}`) or give this job another name",
            kind=desired["kind"], name=meta["name"], reason="payload-hash", expected=want,
            found=have)


class KubeRayService:
    """A ready RayService; ``url`` is its Serve route inside the Kubernetes cluster."""

    def __init__(self, obj: Mapping[str, Any], route: str, *, created: bool) -> None:
        self.name: str = obj["metadata"]["name"]
        self.namespace: str = obj["metadata"]["namespace"]
        self.status: dict[str, Any] = dict(obj.get("status") or {})
        self.route, self.created = route, created

    @property
    def url(self) -> str:
        # KubeRay names the Serve Service <rayservice>-serve-svc, port 8000
        return f"http://{self.name}-serve-svc.{self.namespace}.svc:8000{self.route}"

    def __repr__(self) -> str:
        return f"KubeRayService({self.namespace}/{self.name}, url={self.url!r})"


def serve(endpoint: Any, cluster_spec: KubeRayClusterConfig | Mapping[str, Any], *,
          import_path: str | None = None, timeout_s: float = 900.0,
          delete_on_failure: bool = True, client: KubeRayClient | None = None) -> KubeRayService:
    """Apply ``endpoint`` as a RayService (create or adopt) and wait until it is Ready with
    serve endpoints > 0 (on failure, a RayService this call created is deleted, as in ``up``)."""
    spec = manifests.as_cluster_config(cluster_spec)
    manifest = manifests.rayservice_manifest(endpoint, spec, import_path=import_path)
    kc = _client(client)
    check_companions(kc, spec, manifest["metadata"]["name"])
    applied = apply(kc, manifest)
    ensure_companions(kc, spec, applied.object)
    obj = _wait_or_release(kc, manifest, applied, timeout_s, delete_on_failure)
    route = manifests.serve_application(endpoint, import_path)[1]["route_prefix"]
    return KubeRayService(obj, route, created=applied.created)
