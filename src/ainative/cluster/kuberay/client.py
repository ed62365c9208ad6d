"""The one place that talks to the Kubernetes API: KubeRay objects through the official client.

Every call goes through :meth:`KubeRayClient._call`, which turns API status codes into typed
errors (401/403 with the RBAC verbs needed, 404 on the CRD = operator not installed, 409, 422 with
the JSON path) instead of returning ``None``. The verbs used here are exactly those of
:data:`ainative.cluster.kuberay.rbac.RULES` (a test checks it against a server that enforces them).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from ainative import errors
from ainative.cluster.kuberay import rbac, schema

logger = logging.getLogger(__name__)
JSON_PATCH = "application/json-patch+json"


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> k8s.ApiClient:
    """An ApiClient from in-cluster config (inside a pod) or a kubeconfig (file/context)."""
    import os

    try:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config()
            return k8s.ApiClient()
        cfg = k8s.Configuration()
        # KUBECONFIG as it is now (the kubernetes package reads it once, at import)
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        k8s_config.load_kube_config(config_file=kubeconfig, context=context,
                                    client_configuration=cfg)
        return k8s.ApiClient(cfg)
    except (k8s_config.ConfigException, OSError) as exc:
        raise errors.KubeRayError(
            f"no Kubernetes credentials: {exc}. Point KUBECONFIG (or kubeconfig=...) at a "
            "kubeconfig, choose a context, or run inside a pod with a service account",
            kubeconfig=kubeconfig, context=context) from None


class KubeRayClient:
    """CRUD + watch of RayCluster / RayJob / RayService objects with typed errors."""

    def __init__(self, api_client: k8s.ApiClient | None = None, *, kubeconfig: str | None = None,
                 context: str | None = None, request_timeout_s: float = 30.0) -> None:
        self.api_client = api_client or load_api_client(kubeconfig, context)
        self.api = k8s.CustomObjectsApi(self.api_client)
        self.request_timeout_s = request_timeout_s

    def _call(self, verb: str, kind: str, namespace: str, name: str | None,
              fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.request_timeout_s)
        try:
            return fn(schema.GROUP, schema.VERSION, namespace, schema.PLURALS[kind], *args, **kwargs)
        except ApiException as exc:
            raise translate(exc, verb, kind, namespace, name) from None
        except (OSError, Urllib3Error) as exc:  # refused, reset, DNS, read timeout
            raise errors.KubeRayError(
                f"cannot reach the Kubernetes API server at {self.api_client.configuration.host}: "
                f"{exc}", verb=verb, kind=kind) from None

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist (but the CRD does)."""
        try:
            obj: dict[str, Any] = self._call("get", kind, namespace, name,
                                             self.api.get_namespaced_custom_object, name)
            return obj
        except errors.KubeRayNotInstalledError:
            raise
        except errors.KubeRayError as exc:
            if exc.details.get("status") == 404:
                return None
            raise

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        obj: dict[str, Any] = self._call(
            "create", manifest["kind"], meta["namespace"], meta.get("name") or meta.get("generateName"),
            self.api.create_namespaced_custom_object, dict(manifest))
        return obj

    def _core(self, verb: str, manifest_kind: str, namespace: str, name: str,
              call: Callable[[], Any]) -> dict[str, Any] | None:
        """A Secret / NetworkPolicy request; None on 404 for ``get``."""
        try:
            obj = call()
        except ApiException as exc:
            if verb == "get" and exc.status == 404:
                return None
            raise translate(exc, verb, manifest_kind, namespace, name) from None
        except (OSError, Urllib3Error) as exc:
            raise errors.KubeRayError(
                f"cannot reach the Kubernetes API server at {self.api_client.configuration.host}: "
                f"{exc}", verb=verb, kind=manifest_kind) from None
        out: dict[str, Any] = self.api_client.sanitize_for_serialization(obj)
        return out

    def get_companion(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret or NetworkPolicy that goes with a Ray object, or None."""
        timeout = self.request_timeout_s
        if kind == "Secret":
            api = k8s.CoreV1Api(self.api_client)
            return self._core("get", kind, namespace, name, lambda: api.read_namespaced_secret(
                name, namespace, _request_timeout=timeout))
        net = k8s.NetworkingV1Api(self.api_client)
        return self._core("get", kind, namespace, name, lambda: net.read_namespaced_network_policy(
            name, namespace, _request_timeout=timeout))

    def create_companion(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Secret or NetworkPolicy (409 -> KubeRayConflictError)."""
        kind, meta = manifest["kind"], manifest["metadata"]
        namespace, body = meta["namespace"], dict(manifest)
        if kind == "Secret":
            create: Callable[..., Any] = k8s.CoreV1Api(self.api_client).create_namespaced_secret
        elif kind == "NetworkPolicy":
            create = k8s.NetworkingV1Api(self.api_client).create_namespaced_network_policy
        else:
            raise errors.KubeRayValidationError(
                f"kind must be Secret or NetworkPolicy; got {kind!r}", path="kind", value=kind)
        obj = self._core("create", kind, namespace, meta["name"],
                         lambda: create(namespace, body, _request_timeout=self.request_timeout_s))
        if obj is None:  # only get answers None
            raise errors.KubeRayError(f"create {kind} {namespace}/{meta['name']}: no object "
                                      "returned", verb="create", kind=kind)
        return obj

    def json_patch(self, kind: str, namespace: str, name: str, ops: list[dict[str, Any]]
                   ) -> dict[str, Any]:
        obj: dict[str, Any] = self._call("patch", kind, namespace, name,
                                         self.api.patch_namespaced_custom_object, name, ops,
                                         _content_type=JSON_PATCH)
        return obj

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            self._call("delete", kind, namespace, name, self.api.delete_namespaced_custom_object,
                       name, propagation_policy="Background")
            return True
        except errors.KubeRayNotInstalledError:
            raise
        except errors.KubeRayError as exc:
            if exc.details.get("status") == 404:
                return False
            raise

    def watch(self, kind: str, namespace: str, name: str, resource_version: str | None,
              timeout_s: float) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event type, object)`` for one object until ``timeout_s`` (server- and client-side).

        ``resource_version=None`` starts with the current object (an ADDED event). A version too
        old to resume from (410 Gone) yields ``("GONE", {})`` and ends: watch again without one."""
        server_timeout = max(1, math.ceil(timeout_s))
        stream = k8s_watch.Watch()
        try:
            for event in stream.stream(
                    self.api.list_namespaced_custom_object, schema.GROUP, schema.VERSION, namespace,
                    schema.PLURALS[kind], field_selector=f"metadata.name={name}",
                    resource_version=resource_version, timeout_seconds=server_timeout,
                    _request_timeout=(5, timeout_s + 2)):
                yield event["type"], event["object"]
        except ApiException as exc:
            if exc.status == 410:
                yield "GONE", {}
                return
            raise translate(exc, "watch", kind, namespace, name) from None
        except (OSError, Urllib3Error) as exc:  # read timeout, dropped stream: caller decides
            logger.debug("watch of %s/%s ended: %s", kind, name, exc)
        finally:
            stream.stop()


def _status_body(exc: ApiException) -> dict[str, Any]:
    import json

    try:
        body = json.loads(exc.body or "{}")
        return body if isinstance(body, dict) else {}
    except ValueError:
        return {}


def translate(exc: ApiException, verb: str, kind: str, namespace: str, name: str | None
              ) -> errors.KubeRayError:
    """An ApiException -> the matching typed KubeRayError (never None, never swallowed)."""
    body = _status_body(exc)
    message = body.get("message") or exc.reason or str(exc)
    code = exc.status or 0
    where = f"{kind} {namespace}/{name}" if name else f"{schema.PLURALS.get(kind, kind)} in {namespace}"
    facts = dict(status=code, verb=verb, kind=kind, namespace=namespace, name=name)
    if code in (401, 403):
        need = rbac.describe_needed(verb, kind, namespace)
        what = "not authenticated (401)" if code == 401 else "forbidden (403)"
        return errors.KubeRayAuthError(
            f"{verb} {where}: {what}: {message}. This needs {need}; the least-privilege Role is "
            "ainative.cluster.kuberay.rbac.role_manifest() (docs/kuberay.md)", **facts)
    if code == 404 and kind in schema.PLURALS and not (body.get("details") or {}).get("name"):
        return errors.KubeRayNotInstalledError(
            f"{verb} {where}: the API server does not know {schema.PLURALS[kind]}.{schema.GROUP}/"
            f"{schema.VERSION}: the KubeRay operator (CRDs) is not installed on this cluster. "
            "Install it, e.g. `helm install kuberay-operator kuberay/kuberay-operator`", **facts)
    if code == 409:
        return errors.KubeRayConflictError(f"{verb} {where}: conflict (409): {message}", **facts)
    if code == 422:
        causes = (body.get("details") or {}).get("causes") or []
        path = causes[0].get("field", "<unknown>") if causes else "<unknown>"
        return errors.KubeRayValidationError(
            f"{verb} {where}: rejected by the API server (422) at {path}: {message}",
            path=path, causes=causes, **facts)
    return errors.KubeRayError(f"{verb} {where}: HTTP {code}: {message}", **facts)


def deadline_left(deadline: float) -> float:
    return deadline - time.monotonic()
