"""Validate KubeRay manifests before they are sent: CRD schema first, then the operator's rules.

::

    manifest ──► fill schema defaults ──► unknown fields? ──► jsonschema (openAPIV3Schema)
                                                               │
                          operator rules (names, containers, ◄─┘
                          min <= max, resources, RayJob modes)  ──► KubeRayValidationError(path=...)

The schemas are the ``v1`` ``openAPIV3Schema`` of the KubeRay v1.7.0 CRDs (``crds/``, provenance in
``crds/SOURCE.md``), loaded on first use and cached. Errors name the JSON path, e.g.
``spec.workerGroupSpecs[1].minReplicas``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

from ainative import errors
from ainative.cluster.kuberay import naming

PLURALS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}
GROUP, VERSION = "ray.io", "v1"
API_VERSION = f"{GROUP}/{VERSION}"
# rayStartParams keys that declare Ray resources; KubeRay rejects them next to the group's
# ``resources`` map because it could not tell which one wins.
START_PARAM_RESOURCES = ("num-cpus", "num-gpus", "memory", "resources")
TERMINAL_MODES = ("K8sJobMode", "HTTPMode", "SidecarMode")


@functools.lru_cache(maxsize=None)
def crd_schema(kind: str) -> dict[str, Any]:
    """The v1 ``openAPIV3Schema`` of a KubeRay kind (cached; ~2 ms to load)."""
    if kind not in PLURALS:
        raise errors.KubeRayValidationError(
            f"kind must be one of {sorted(PLURALS)}; got {kind!r}", path="kind", value=kind)
    text = resources.files("ainative.cluster.kuberay").joinpath(
        "crds").joinpath(f"{PLURALS[kind]}.v1.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)["openAPIV3Schema"]
    return schema


@functools.lru_cache(maxsize=None)
def _validator(kind: str) -> Any:
    import jsonschema

    return jsonschema.Draft4Validator(crd_schema(kind))


def json_path(parts: Any) -> str:
    """``["spec", "workerGroupSpecs", 0, "template"]`` -> ``spec.workerGroupSpecs[0].template``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _fail(path: str, message: str, **extra: Any) -> errors.KubeRayValidationError:
    return errors.KubeRayValidationError(f"{path}: {message}", path=path, **extra)


def fill_defaults(obj: Any, schema: Mapping[str, Any]) -> Any:
    """Set every absent property that has a schema ``default``, as the API server does."""
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                fill_defaults(obj[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, value in obj.items():
                if key not in props:
                    fill_defaults(value, extra)
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for item in obj:
            fill_defaults(item, schema["items"])
    return obj


def unknown_fields(obj: Any, schema: Mapping[str, Any], path: tuple[Any, ...] = ()
                   ) -> Iterator[tuple[Any, ...]]:
    """Paths of fields that the schema does not know (the API server would silently drop them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if props is not None and key in props:
                yield from unknown_fields(value, props[key], (*path, key))
            elif isinstance(extra, Mapping):
                yield from unknown_fields(value, extra, (*path, key))
            elif props is not None and not extra:
                yield (*path, key)
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(obj):
            yield from unknown_fields(item, schema["items"], (*path, i))


def prune_unknown(obj: dict[str, Any], kind: str) -> list[str]:
    """Drop unknown fields in place (the API server's default); returns their paths."""
    dropped = sorted(unknown_fields(obj, crd_schema(kind)), key=lambda p: [str(x) for x in p])
    for parts in reversed(dropped):
        parent: Any = obj
        for part in parts[:-1]:
            parent = parent[part]
        parent.pop(parts[-1], None)
    return [json_path(p) for p in dropped]


def validate_schema(manifest: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """Defaults + CRD schema. Returns a defaulted deep copy; raises naming the first bad path.

    ``strict`` also rejects unknown fields (a typo would otherwise be dropped without a word)."""
    if not isinstance(manifest, Mapping):
        raise _fail("<root>", f"a manifest must be a mapping, got {type(manifest).__name__}")
    kind = manifest.get("kind")
    if manifest.get("apiVersion") != API_VERSION or kind not in PLURALS:
        raise _fail("apiVersion", f"expected apiVersion {API_VERSION!r} and kind in "
                    f"{sorted(PLURALS)}; got {manifest.get('apiVersion')!r}/{kind!r}")
    obj = fill_defaults(copy.deepcopy(dict(manifest)), crd_schema(kind))
    if strict:
        bad = sorted(unknown_fields(obj, crd_schema(kind)), key=lambda p: [str(x) for x in p])
        if bad:
            paths = [json_path(p) for p in bad]
            raise _fail(paths[0], f"unknown field (not in the {kind} v1 CRD); all unknown: "
                        f"{paths[:5]}", unknown=paths)
    found = sorted(_validator(kind).iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    if found:
        first = found[0]
        paths = [json_path(e.absolute_path) for e in found]
        raise _fail(paths[0], f"{first.message[:300]} (CRD {kind} v1 schema; {len(found)} "
                    "error(s))", all_paths=paths)
    return obj


def validate(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Full validation before apply: schema (strict) and the operator's own rules."""
    obj = validate_schema(manifest, strict=True)
    check_operator_rules(obj)
    return obj


def check_operator_rules(obj: Mapping[str, Any]) -> None:
    """Rules the KubeRay operator enforces that the CRD schema does not carry."""
    kind = obj["kind"]
    _metadata_rules(obj.get("metadata") or {}, kind)
    spec = obj.get("spec") or {}
    if kind == "RayCluster":
        _cluster_rules(spec, "spec")
    elif kind == "RayJob":
        _rayjob_rules(spec)
    else:
        _cluster_rules(spec.get("rayClusterConfig") or {}, "spec.rayClusterConfig")
        _serve_config_rules(spec.get("serveConfigV2"))


def _metadata_rules(meta: Mapping[str, Any], kind: str) -> None:
    """The API server's metadata rules (label syntax) and KubeRay's name rules. A manifest may
    give ``generateName`` instead of ``name``: the server appends 5 characters."""
    name, prefix = meta.get("name"), meta.get("generateName")
    try:
        if name or not prefix:
            naming.check_name("metadata", "name", name, kind)
        else:
            naming.check_generate_name("metadata", "generateName", prefix, kind)
    except errors.ConfigError as exc:
        field = "metadata.name" if name or not prefix else "metadata.generateName"
        raise _fail(field, str(exc), value=name or prefix) from None
    for field in ("labels", "annotations"):
        for key, value in (meta.get(field) or {}).items():
            try:
                naming.check_label_key("metadata", field, key)
                if field == "labels":
                    naming.check_label_value("metadata", f"labels[{key!r}]", value)
            except errors.ConfigError as exc:
                raise _fail(f"metadata.{field}", str(exc), value=key) from None


def _auth_rules(spec: Mapping[str, Any], path: str) -> None:
    """KubeRay's authOptions rules: token mode needs Ray >= 2.52 (K8s token auth >= 2.55, and
    not together with secretName)."""
    auth = spec.get("authOptions") or {}
    if auth.get("mode") != "token":  # KubeRay: only an explicit "token" turns auth on
        if auth.get("enableK8sTokenAuth"):
            raise _fail(f"{path}.authOptions.enableK8sTokenAuth", "needs authOptions.mode 'token'")
        return
    version = spec.get("rayVersion") or ""
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
    need = (2, 55, 0) if auth.get("enableK8sTokenAuth") else (2, 52, 0)
    if not parts or parts < need:
        raise _fail(f"{path}.rayVersion", f"authOptions.mode 'token' needs rayVersion >= "
                    f"{'.'.join(map(str, need))}; got {version!r}")
    if auth.get("enableK8sTokenAuth") and auth.get("secretName"):
        raise _fail(f"{path}.authOptions.secretName",
                    "cannot be set together with enableK8sTokenAuth")


def _containers(template: Any, path: str) -> None:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    if not containers:
        raise _fail(f"{path}.spec.containers", "a pod template needs at least one container "
                    "(the Ray container first)")


def _group_rules(group: Mapping[str, Any], path: str, label: str) -> None:
    _containers(group.get("template"), f"{path}.template")
    params = group.get("rayStartParams") or {}
    if group.get("resources") and any(params.get(k) for k in START_PARAM_RESOURCES):
        keys = [k for k in START_PARAM_RESOURCES if params.get(k)]
        raise _fail(f"{path}.resources", f"group {label} sets Ray resources both in rayStartParams "
                    f"{keys} and in resources; use only one (ainative uses resources)")
    if "labels" in params:
        raise _fail(f"{path}.rayStartParams.labels", "not supported; use the group's labels field")


def _cluster_rules(spec: Mapping[str, Any], path: str) -> None:
    head = spec.get("headGroupSpec")
    if not isinstance(head, Mapping):
        raise _fail(f"{path}.headGroupSpec", "required")
    _auth_rules(spec, path)
    _group_rules(head, f"{path}.headGroupSpec", "head")
    seen: set[str] = set()
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        where = f"{path}.workerGroupSpecs[{i}]"
        name = group.get("groupName")
        if name in seen:
            raise _fail(f"{where}.groupName", f"duplicate worker group name {name!r}")
        seen.add(name)
        _group_rules(group, where, repr(name))
        lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if lo > hi:
            raise _fail(f"{where}.minReplicas", f"minReplicas {lo} > maxReplicas {hi}")
        for field in ("replicas", "minReplicas", "maxReplicas"):
            if group.get(field, 0) < 0:
                raise _fail(f"{where}.{field}", f"must be >= 0, got {group[field]}")


def _rayjob_rules(spec: Mapping[str, Any]) -> None:
    has_spec, has_selector = bool(spec.get("rayClusterSpec")), bool(spec.get("clusterSelector"))
    if has_spec == has_selector:
        raise _fail("spec.rayClusterSpec", "exactly one of rayClusterSpec (a new cluster for the "
                    "job) and clusterSelector (an existing cluster) must be set; got "
                    f"{'both' if has_spec else 'neither'}")
    if has_spec:
        _cluster_rules(spec["rayClusterSpec"], "spec.rayClusterSpec")
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        raise _fail("spec.suspend", "suspend: true needs shutdownAfterJobFinishes: true")
    if has_selector and spec.get("shutdownAfterJobFinishes"):
        raise _fail("spec.shutdownAfterJobFinishes", "cannot shut down a cluster chosen by "
                    "clusterSelector (the job did not create it)")
    for field in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
        if field in spec and spec[field] <= 0:
            raise _fail(f"spec.{field}", f"must be > 0 seconds, got {spec[field]}")
    for field in ("ttlSecondsAfterFinished", "backoffLimit"):
        if spec.get(field, 0) < 0:
            raise _fail(f"spec.{field}", f"must be >= 0, got {spec[field]}")
    mode = spec.get("submissionMode", "K8sJobMode")
    template = spec.get("submitterPodTemplate")
    if template:
        _containers(template, "spec.submitterPodTemplate")
    if mode == "SidecarMode":
        for field in ("clusterSelector", "submitterPodTemplate", "submitterConfig"):
            if spec.get(field):
                raise _fail(f"spec.{field}", "not supported in submissionMode SidecarMode")
    # A submitter pod that brings its own command runs that command; KubeRay then never reads
    # the entrypoint (it builds `ray job submit ... -- <entrypoint>` only for the default one).
    own_command = mode == "K8sJobMode" and bool(
        (((template or {}).get("spec") or {}).get("containers") or [{}])[0].get("command"))
    if mode in TERMINAL_MODES and not own_command and not (spec.get("entrypoint") or "").strip():
        raise _fail("spec.entrypoint", f"required in submissionMode {mode} (unless a "
                    "submitterPodTemplate container brings its own command)")


def _serve_config_rules(text: Any) -> None:
    import yaml

    if not isinstance(text, str) or not text.strip():
        raise _fail("spec.serveConfigV2", "required: a YAML string with 'applications'")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail("spec.serveConfigV2", f"not valid YAML: {exc}") from None
    apps = parsed.get("applications") if isinstance(parsed, Mapping) else None
    if not isinstance(apps, list) or not apps:
        raise _fail("spec.serveConfigV2.applications", "needs at least one application")
    for i, app in enumerate(apps):
        if not isinstance(app, Mapping) or not app.get("import_path"):
            raise _fail(f"spec.serveConfigV2.applications[{i}].import_path", "required")
