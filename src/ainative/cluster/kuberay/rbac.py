"""The least-privilege RBAC Role that ainative's KubeRay client needs, as data.

The client creates, reads, watches, patches and deletes KubeRay objects in one namespace; it never
touches pods, services, secrets, status subresources, or anything cluster-scoped. Port-forwarding
(``kubectl port-forward``) is the user's own kubectl and needs ``pods/portforward`` only then.
"""

from __future__ import annotations

from typing import Any

from ainative.cluster.kuberay import schema

# No "list": waits watch one object by name (fieldSelector), which needs only "watch".
VERBS: tuple[str, ...] = ("create", "delete", "get", "patch", "watch")
RESOURCES: tuple[str, ...] = tuple(sorted(schema.PLURALS.values()))
RULES: list[dict[str, Any]] = [
    {"apiGroups": [schema.GROUP], "resources": list(RESOURCES), "verbs": list(VERBS)},
]


def allows(verb: str, resource: str, group: str = schema.GROUP) -> bool:
    """Whether RULES allow ``verb`` on ``resource`` (``rayclusters``, ``rayjobs/status``...)."""
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
               for r in RULES)


def role_manifest(namespace: str = "default", name: str = "ainative-kuberay") -> dict[str, Any]:
    """The Role to bind to the user or service account that runs ainative."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [dict(rule) for rule in RULES]}


def describe_needed(verb: str, kind: str, namespace: str) -> str:
    plural = schema.PLURALS.get(kind, kind)
    return (f"RBAC verb {verb!r} on {plural}.{schema.GROUP} in namespace {namespace!r} (the full "
            f"Role: verbs {list(VERBS)} on {list(RESOURCES)})")
