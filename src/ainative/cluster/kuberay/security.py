"""Secure defaults around a Ray cluster on Kubernetes: the auth-token Secret and a NetworkPolicy.

::

    KubeRayClusterConfig(auth="token")         (the default)
      ├─ auth_secret=None ─► auth_secret_manifest(): Secret <object>-ray-auth {auth_token: random}
      │                       created before the Ray object; adopted (never rotated) if ours
      └─ auth_secret="x"  ─► nothing created; the Secret "x" must hold key auth_token
    RayCluster/RayJob/RayService: spec.authOptions {mode: token, secretName: <that Secret>}
      -> KubeRay sets RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (secretKeyRef) in every Ray container

    network_policy=True ─► networkpolicy_manifest(): pods labelled ainative.io/cluster=<object>
                            accept traffic only from the same cluster's pods and from the
                            namespaces in allowed_namespaces (egress unrestricted)

Pure functions: no kubernetes import. The token never appears in a Ray object, only in the
Secret, and only as ``stringData`` of the request that creates it.
"""

from __future__ import annotations

import secrets
from typing import Any

from ainative.cluster.kuberay import manifests
from ainative.cluster.kuberay.config import KubeRayClusterConfig

TOKEN_KEY = "auth_token"  # the key KubeRay reads (utils.RAY_AUTH_TOKEN_SECRET_KEY)
TOKEN_BYTES = 32


def _labels(spec: KubeRayClusterConfig, owner_name: str) -> dict[str, str]:
    return {manifests.MANAGED_BY: "ainative", manifests.OWNER_LABEL: spec.owner,
            manifests.CLUSTER_LABEL: owner_name}


def auth_secret_manifest(spec: KubeRayClusterConfig, owner_name: str | None = None, *,
                         token: str | None = None) -> dict[str, Any] | None:
    """The Secret with the Ray token of ``owner_name``'s cluster, or None when ainative does not
    create one (auth disabled, or ``auth_secret`` names an existing Secret)."""
    owner_name = owner_name or spec.name
    if spec.auth != "token" or spec.auth_secret is not None:
        return None
    name = manifests.auth_secret_name(spec, owner_name)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": spec.namespace,
                         "labels": _labels(spec, owner_name)},
            "stringData": {TOKEN_KEY: token or secrets.token_urlsafe(TOKEN_BYTES)}}


def networkpolicy_manifest(spec: KubeRayClusterConfig, owner_name: str | None = None
                           ) -> dict[str, Any]:
    """A NetworkPolicy: the Ray pods of ``owner_name`` accept ingress only from pods of the same
    object and from pods in ``spec.allowed_namespaces``."""
    owner_name = owner_name or spec.name
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": {
        manifests.CLUSTER_LABEL: owner_name}}}]
    if spec.allowed_namespaces:
        peers.append({"namespaceSelector": {"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "In",
            "values": list(spec.allowed_namespaces)}]}})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"{owner_name}-ray", "namespace": spec.namespace,
                         "labels": _labels(spec, owner_name)},
            "spec": {"podSelector": {"matchLabels": {manifests.CLUSTER_LABEL: owner_name}},
                     "policyTypes": ["Ingress"], "ingress": [{"from": peers}]}}


def companions(spec: KubeRayClusterConfig, owner_name: str) -> list[dict[str, Any]]:
    """The Secret and NetworkPolicy (as configured) that go with a Ray object."""
    out = []
    secret = auth_secret_manifest(spec, owner_name)
    if secret is not None:
        out.append(secret)
    if spec.network_policy:
        out.append(networkpolicy_manifest(spec, owner_name))
    return out


def redacted(manifest: dict[str, Any]) -> dict[str, Any]:
    """A Secret manifest fit for printing (``--dry-run``): the token replaced by a note."""
    if manifest.get("kind") != "Secret":
        return manifest
    return {**manifest, "stringData": {TOKEN_KEY: "<random token, generated when applied>"}}
