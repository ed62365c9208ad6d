"""The least-privilege RBAC Role that ainative's KubeRay client needs, as data.

The client creates, reads, watches, patches and deletes KubeRay objects in one namespace; beside
them it creates and reads the Secret holding a cluster's Ray token and, when asked, a
NetworkPolicy (``create``/``get`` only: it never lists, patches or deletes them, so it cannot read
other Secrets by listing). It never touches pods, services, status subresources, or anything
cluster-scoped. Port-forwarding (``kubectl port-forward``) is the user's own kubectl and needs
``pods/portforward`` only then.
"""

from __future__ import annotations

from typing import Any

from ainative.cluster.kuberay import schema

# No "list": waits watch one object by name (fieldSelector), which needs only "watch".
VERBS: tuple[str, ...] = ("create", "delete", "get", "patch", "watch")
RESOURCES: tuple[str, ...] = tuple(sorted(schema.PLURALS.values()))
# The companions of a Ray object: API group -> (resource, verbs).
COMPANIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "": ("secrets", ("create", "get")),
    "networking.k8s.io": ("networkpolicies", ("create", "get")),
}
RULES: list[dict[str, Any]] = [
    {"apiGroups": [schema.GROUP], "resources": list(RESOURCES), "verbs": list(VERBS)},
    *({"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
      for group, (resource, verbs) in COMPANIONS.items()),
]


def group_of(resource: str) -> str:
    """The API group of a resource name (``secrets`` -> ``""``, ``rayjobs`` -> ``ray.io``)."""
    base = resource.split("/")[0]
    for group, (name, _) in COMPANIONS.items():
        if base == name:
            return group
    return schema.GROUP


def allows(verb: str, resource: str, group: str | None = None) -> bool:
    """Whether RULES allow ``verb`` on ``resource`` (``rayclusters``, ``secrets``...)."""
    group = group_of(resource) if group is None else group
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               for r in RULES)


def role_manifest(namespace: str = "default", name: str = "ainative-kuberay") -> dict[str, Any]:
    """The Role to bind to the user or service account that runs ainative."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [dict(rule) for rule in RULES]}


def describe_needed(verb: str, kind: str, namespace: str) -> str:
    plural = schema.PLURALS.get(kind) or {"Secret": "secrets",
                                          "NetworkPolicy": "networkpolicies"}.get(kind, kind)
    group = group_of(plural)
    return (f"RBAC verb {verb!r} on {plural}.{group or 'core'} in namespace {namespace!r} (the "
            "full Role: ainative.cluster.kuberay.rbac.role_manifest())")
