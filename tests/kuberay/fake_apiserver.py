"""An in-process Kubernetes API server for KubeRay objects, on 127.0.0.1, for the real client.

It speaks the wire protocol that the official ``kubernetes`` client uses: create (201), get, list
with label and field selectors, merge patch, JSON patch, server-side apply, replace, delete, watch
streams (chunked JSON lines, ``resourceVersion``, ``timeoutSeconds``, 410 Gone after compaction),
``uid``/``resourceVersion``/``generation``, the status subresource, and ``Status`` bodies for
401/403/404/409/415/422. A 422 comes from the same CRD validation that ainative runs before apply
(``ainative.cluster.kuberay.schema``, the KubeRay v1.7.0 schemas), after the server has filled
defaults and pruned unknown fields as a real API server does.

Beside the KubeRay kinds it keeps core ``v1`` Secrets and ``networking.k8s.io/v1`` NetworkPolicies
(create, get, delete: what ainative creates next to a Ray object), converting a Secret's
``stringData`` into base64 ``data`` as the real server does. ``metadata.generateName`` without a
name gets 5 random characters; label keys and values are checked with the API server's syntax rules
(422 otherwise).

Optional bearer-token RBAC: ``tokens={"t": rules}`` where rules use the Role format; requests
without a known token get 401, requests outside the rules 403. Every request is logged as
``(verb, resource)`` so tests can check which verbs a client used.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from ainative import errors
from ainative.cluster.kuberay import schema

KINDS = {plural: kind for kind, plural in schema.PLURALS.items()}
COMPANIONS = {"secrets": "Secret", "networkpolicies": "NetworkPolicy"}
_PATH = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?(?:/(status))?$")
_COMPANION_PATH = re.compile(r"^/(?:api/v1|apis/networking\.k8s\.io/v1)/namespaces/([^/]+)/"
                             r"(secrets|networkpolicies)(?:/([^/]+))?$")
_LABEL = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_errors(meta: dict[str, Any]) -> list[str]:
    """The API server's label syntax checks (apimachinery's ValidateLabels)."""
    found = []
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix))) or not name or \
                len(name) > 63 or not _LABEL.match(name):
            found.append(f"metadata.labels: Invalid value: {key!r}: name part must consist of "
                         "alphanumeric characters, '-', '_' or '.'")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL.match(value):
            found.append(f"metadata.labels: Invalid value: {value!r}: a valid label must be an "
                         "empty string or consist of alphanumeric characters, '-', '_' or '.'")
    return found


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": details, "code": code}


class HttpError(Exception):
    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.body = code, status_body(code, reason, message, **details)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902: add, remove, replace, test (enough for the clients under test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op["value"])
            elif kind == "remove":
                parent.pop(index)
            elif kind == "replace":
                parent[index] = op["value"]
            elif kind == "test" and parent[index] != op["value"]:
                raise HttpError(422, "Invalid", f"test operation failed at {op['path']}")
        else:
            if kind in ("remove", "replace", "test") and last not in parent:
                raise HttpError(422, "Invalid", f"{kind}: no value at {op['path']}")
            if kind in ("add", "replace"):
                parent[last] = op["value"]
            elif kind == "remove":
                del parent[last]
            elif kind == "test" and parent[last] != op["value"]:
                raise HttpError(422, "Invalid", f"test operation failed at {op['path']}")
    return doc


def label_match(labels: dict[str, str], selector: str | None) -> bool:
    """Equality- and set-based selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``."""
    if not selector:
        return True
    for term in re.split(r",(?![^()]*\))", selector):
        term = term.strip()
        if m := re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", term):
            values = {v.strip() for v in m.group(3).split(",")}
            inside = labels.get(m.group(1)) in values
            if inside != (m.group(2) == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = re.split(r"==?", term, maxsplit=1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class Store:
    """Objects, a resourceVersion counter and the event log that watches read from."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # rv, type, plural, obj
        self.compacted_before = 0
        self.epoch = 0  # bumped by compact(close_watches=True): open watch streams end
        self.gone_sent = 0  # how many watches were answered 410 Gone
        self.cond = threading.Condition()
        self._rv = itertools.count(1000)
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []

    def next_rv(self) -> int:
        return next(self._rv)

    def emit(self, event_type: str, plural: str, obj: dict[str, Any]) -> None:
        """Record an event (the caller holds ``cond``)."""
        self.events.append((int(obj["metadata"]["resourceVersion"]), event_type, plural,
                            copy.deepcopy(obj)))
        self.cond.notify_all()

    def notify(self, event_type: str, plural: str, obj: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(event_type, plural, copy.deepcopy(obj))

    def compact(self, *, close_watches: bool = False) -> None:
        """Forget the event log, as etcd compaction does: older resourceVersions get 410.
        ``close_watches`` also ends the open watch streams (as an API server restart does)."""
        with self.cond:
            self.compacted_before = self.next_rv()
            self.events.clear()
            if close_watches:
                self.epoch += 1
                self.cond.notify_all()

    def set_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """What the operator does through the status subresource."""
        with self.cond:
            obj = self.objects.get((plural, namespace, name))
            if obj is None:
                return False
            obj["status"] = copy.deepcopy(status)
            obj["metadata"]["resourceVersion"] = str(self.next_rv())
            self.emit("MODIFIED", plural, obj)
            return True

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def delete(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self.objects.pop((plural, namespace, name), None)
            if obj is not None:
                obj["metadata"]["resourceVersion"] = str(self.next_rv())
                self.emit("DELETED", plural, obj)
        if obj is not None:
            self.notify("DELETED", plural, obj)
        return obj


class FakeApiServer:
    """Start with ``FakeApiServer().start()``; ``.url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, *, tokens: dict[str, list[dict[str, Any]]] | None = None,
                 installed: tuple[str, ...] = tuple(KINDS)) -> None:
        self.store = Store()
        self.tokens = tokens
        self.installed = set(installed)
        self.requests: list[tuple[str, str]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.httpd.daemon_threads = True
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="fake-apiserver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        with self.store.cond:
            self.store.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def api_client(self, token: str | None = None) -> Any:
        """A real ``kubernetes.client.ApiClient`` pointed at this server."""
        from kubernetes import client as k8s

        cfg = k8s.Configuration()
        cfg.host = self.url
        if token is not None:
            cfg.api_key = {"authorization": token}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        return k8s.ApiClient(cfg)

    def create_companion(self, plural: str, namespace: str, body: dict[str, Any]
                         ) -> dict[str, Any]:
        """A Secret or NetworkPolicy: name and label syntax, then stored (no other schema)."""
        kind = COMPANIONS[plural]
        meta = body.setdefault("metadata", {})
        meta["namespace"] = namespace
        name = meta.get("name") or ""
        problems = label_errors(meta)
        if not _SUBDOMAIN.match(name) or len(name) > 253:
            problems.insert(0, f"metadata.name: Invalid value: {name!r}")
        if body.get("kind") != kind:
            problems.insert(0, f"kind: expected {kind}, got {body.get('kind')!r}")
        if kind == "NetworkPolicy" and "podSelector" not in (body.get("spec") or {}):
            problems.append("spec.podSelector: Required value")
        if problems:
            raise HttpError(422, "Invalid", f'{kind} "{name}" is invalid: {problems[0]}',
                            name=name, kind=plural)
        obj = copy.deepcopy(body)
        if kind == "Secret":  # stringData is write-only: merged into base64 data
            import base64

            data = dict(obj.get("data") or {})
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
        with self.store.cond:
            if (plural, namespace, name) in self.store.objects:
                raise HttpError(409, "AlreadyExists", f'{plural} "{name}" already exists',
                                name=name, kind=plural)
            obj["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=str(self.store.next_rv()),
                                   creationTimestamp=now())
            self.store.objects[(plural, namespace, name)] = obj
        return copy.deepcopy(obj)

    # --- request handling -------------------------------------------------------------
    def authorize(self, header: str | None, verb: str, resource: str) -> None:
        self.requests.append((verb, resource))
        if self.tokens is None:
            return
        token = (header or "").removeprefix("Bearer ").strip()
        rules = self.tokens.get(token)
        if rules is None:
            raise HttpError(401, "Unauthorized", "Unauthorized")
        from ainative.cluster.kuberay import rbac

        group = rbac.group_of(resource)
        if not any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]
                   for r in rules):
            raise HttpError(403, "Forbidden", f'{resource} is forbidden: User "test" cannot '
                            f'{verb} resource "{resource}" in API group "{group}"',
                            kind=resource.split("/")[0], group=group)

    def admit(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Defaults, pruning and CRD schema validation, as the API server runs them."""
        bad = label_errors(obj.get("metadata") or {})
        if bad:
            name = (obj.get("metadata") or {}).get("name", "")
            raise HttpError(422, "Invalid", f'{kind} "{name}" is invalid: {bad[0]}', name=name,
                            kind=kind, causes=[{"reason": "FieldValueInvalid", "message": bad[0],
                                                "field": "metadata.labels"}])
        obj = schema.fill_defaults(obj, schema.crd_schema(kind))
        schema.prune_unknown(obj, kind)
        name = obj.get("metadata", {}).get("name", "")
        try:
            return schema.validate_schema(obj, strict=True)
        except errors.KubeRayValidationError as exc:
            raise HttpError(422, "Invalid", f'{kind} "{name}" is invalid: {exc}',
                            name=name, group="ray.io", kind=kind,
                            causes=[{"reason": "FieldValueInvalid", "message": str(exc),
                                     "field": exc.details.get("path", "")}]) from None

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = KINDS[plural]
        meta = body.setdefault("metadata", {})
        meta["namespace"] = namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name", "")
        obj = self.admit(kind, body)
        with self.store.cond:
            if (plural, namespace, name) in self.store.objects:
                raise HttpError(409, "AlreadyExists", f'{plural}.ray.io "{name}" already exists',
                                name=name, group="ray.io", kind=plural)
            meta = obj["metadata"]
            meta.update(uid=str(uuid.uuid4()), resourceVersion=str(self.store.next_rv()),
                        generation=1, creationTimestamp=now())
            obj.pop("status", None)
            self.store.objects[(plural, namespace, name)] = obj
            self.store.emit("ADDED", plural, obj)
        self.store.notify("ADDED", plural, obj)
        return copy.deepcopy(obj)

    def update(self, plural: str, namespace: str, name: str, subresource: str | None,
               change: Callable[[dict[str, Any]], dict[str, Any]], *, create_missing: bool = False
               ) -> tuple[int, dict[str, Any]]:
        """Apply ``change`` to the stored object with the API server's update semantics."""
        kind = KINDS[plural]
        with self.store.cond:
            current = self.store.objects.get((plural, namespace, name))
            if current is None:
                if not create_missing:
                    raise HttpError(404, "NotFound", f'{plural}.ray.io "{name}" not found',
                                    name=name, group="ray.io", kind=plural)
                base = {"apiVersion": "ray.io/v1", "kind": kind,
                        "metadata": {"name": name, "namespace": namespace}}
                new = change(base)
                new.setdefault("metadata", {})["name"] = name
                return 201, self.create(plural, namespace, new)
            new = change(copy.deepcopy(current))
            sent_rv = (new.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                raise HttpError(409, "Conflict", f'Operation cannot be fulfilled on {plural}.ray.io '
                                f'"{name}": the object has been modified; please apply your changes '
                                "to the latest version and try again", name=name, kind=plural)
            if subresource == "status":  # only status may change through /status
                new = {**copy.deepcopy(current), "status": new.get("status")}
            else:  # and status never through the main resource
                new["status"] = copy.deepcopy(current.get("status"))
                if new["status"] is None:
                    new.pop("status")
            for key in ("uid", "creationTimestamp", "name", "namespace", "generation"):
                new["metadata"][key] = current["metadata"].get(key)
            obj = self.admit(kind, new)
            if obj.get("spec") != current.get("spec"):
                obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
            if obj == current:
                return 200, copy.deepcopy(current)
            obj["metadata"]["resourceVersion"] = str(self.store.next_rv())
            self.store.objects[(plural, namespace, name)] = obj
            self.store.emit("MODIFIED", plural, obj)
        self.store.notify("MODIFIED", plural, obj)
        return 200, copy.deepcopy(obj)


def _verb(method: str, name: str | None, query: dict[str, str]) -> str:
    if method == "GET":
        if name:
            return "get"
        return "watch" if query.get("watch") in ("true", "1") else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]


def _make_handler(server: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            raw = self._raw
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            return ctype, (yaml.safe_load(raw) if ctype.endswith("yaml") else json.loads(raw or b"null"))

        def _handle(self, method: str) -> None:
            # read the whole body first: an unread body would corrupt the kept-alive connection
            length = int(self.headers.get("Content-Length") or 0)
            self._raw = self.rfile.read(length) if length else b""
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            m = _PATH.match(url.path)
            if not m and (c := _COMPANION_PATH.match(url.path)):
                return self._companion(method, *c.groups())
            try:
                if not m:
                    raise HttpError(404, "NotFound", "the server could not find the requested resource")
                namespace, plural, name, sub = m.groups()
                resource = f"{plural}/{sub}" if sub else plural
                server.authorize(self.headers.get("Authorization"), _verb(method, name, query),
                                 resource)
                if plural not in server.installed or plural not in KINDS:
                    raise HttpError(404, "NotFound", "the server could not find the requested resource")
                if method == "GET" and not name and query.get("watch") in ("true", "1"):
                    return self._watch(plural, namespace, query)
                code, body = self._dispatch(method, plural, namespace, name, sub, query)
                self._send(code, body)
            except HttpError as exc:
                self._send(exc.code, exc.body)

        def _companion(self, method: str, namespace: str, plural: str, name: str | None) -> None:
            try:
                server.authorize(self.headers.get("Authorization"), _verb(method, name, {}), plural)
                store = server.store
                if method == "POST" and not name:
                    _, body = self._body()
                    return self._send(201, server.create_companion(plural, namespace, body))
                if method in ("GET", "DELETE") and name:
                    obj = (store.get if method == "GET" else store.delete)(plural, namespace, name)
                    if obj is None:
                        raise HttpError(404, "NotFound", f'{plural} "{name}" not found',
                                        name=name, kind=plural)
                    return self._send(200, obj)
                raise HttpError(405, "MethodNotAllowed", f"{method} not allowed here")
            except HttpError as exc:
                self._send(exc.code, exc.body)

        def _dispatch(self, method: str, plural: str, namespace: str, name: str | None,
                      sub: str | None, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
            store = server.store
            if method == "GET" and name:
                obj = store.get(plural, namespace, name)
                if obj is None:
                    raise HttpError(404, "NotFound", f'{plural}.ray.io "{name}" not found',
                                    name=name, group="ray.io", kind=plural)
                return 200, obj
            if method == "GET":
                return 200, self._list(plural, namespace, query)
            if method == "POST" and not name:
                _, body = self._body()
                return 201, server.create(plural, namespace, body)
            if method == "DELETE" and name:
                obj = store.delete(plural, namespace, name)
                if obj is None:
                    raise HttpError(404, "NotFound", f'{plural}.ray.io "{name}" not found',
                                    name=name, group="ray.io", kind=plural)
                return 200, obj
            if method in ("PATCH", "PUT") and name:
                return self._write(method, plural, namespace, name, sub, query)
            raise HttpError(405, "MethodNotAllowed", f"{method} not allowed here")

        def _write(self, method: str, plural: str, namespace: str, name: str, sub: str | None,
                   query: dict[str, str]) -> tuple[int, dict[str, Any]]:
            ctype, body = self._body()
            if method == "PUT":
                return server.update(plural, namespace, name, sub, lambda cur: body)
            if ctype == "application/merge-patch+json":
                return server.update(plural, namespace, name, sub, lambda cur: merge_patch(cur, body))
            if ctype == "application/json-patch+json":
                return server.update(plural, namespace, name, sub, lambda cur: json_patch(cur, body))
            if ctype == "application/apply-patch+yaml":
                if not query.get("fieldManager"):
                    raise HttpError(400, "BadRequest", "fieldManager is required for apply patch")
                return server.update(plural, namespace, name, sub,
                                     lambda cur: merge_patch(cur, body), create_missing=True)
            raise HttpError(415, "UnsupportedMediaType", f"the body of the request was in an "
                            f"unknown format - accepted media types include: application/json-patch"
                            f"+json, application/merge-patch+json, application/apply-patch+yaml "
                            f"(got {ctype})")

        def _list(self, plural: str, namespace: str, query: dict[str, str]) -> dict[str, Any]:
            store = server.store
            with store.cond:
                items = [copy.deepcopy(o) for (p, ns, _), o in sorted(store.objects.items())
                         if p == plural and ns == namespace and self._selected(o, query)]
                rv = str(store.next_rv())
            return {"apiVersion": "ray.io/v1", "kind": KINDS[plural] + "List", "items": items,
                    "metadata": {"resourceVersion": rv}}

        @staticmethod
        def _selected(obj: dict[str, Any], query: dict[str, str]) -> bool:
            meta = obj["metadata"]
            field = query.get("fieldSelector")
            if field:
                key, _, value = field.partition("=")
                if key != "metadata.name" or meta["name"] != value.lstrip("="):
                    return False
            return label_match(meta.get("labels") or {}, query.get("labelSelector"))

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _watch(self, plural: str, namespace: str, query: dict[str, str]) -> None:
            store = server.store
            timeout = float(query.get("timeoutSeconds") or 1800)
            deadline = time.monotonic() + timeout
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            since = query.get("resourceVersion") or "0"
            pending: list[tuple[str, dict[str, Any]]] = []
            with store.cond:
                if since == "0":  # no version: start with the current state, as ADDED events
                    pending = [("ADDED", copy.deepcopy(o)) for (p, ns, _), o in
                               sorted(store.objects.items()) if p == plural and ns == namespace]
                    since_rv = store.next_rv()
                else:
                    since_rv = int(since)
                    if since_rv < store.compacted_before:
                        gone = status_body(410, "Expired", f"too old resource version: {since_rv}")
                        pending = [("ERROR", gone)]
                        store.gone_sent += 1
            try:
                self._stream(plural, namespace, query, pending, since_rv, deadline)
            except (BrokenPipeError, ConnectionResetError):
                return

        def _stream(self, plural: str, namespace: str, query: dict[str, str],
                    pending: list[tuple[str, dict[str, Any]]], since_rv: int, deadline: float) -> None:
            store = server.store
            for event_type, obj in pending:
                self._chunk(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")
                if event_type == "ERROR":
                    self._chunk(b"")
                    return
            cursor, epoch = since_rv, store.epoch
            while not server.stopping.is_set() and store.epoch == epoch:
                with store.cond:
                    fresh = [e for e in store.events if e[0] > cursor and e[2] == plural]
                    if not fresh:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        store.cond.wait(min(left, 0.5))
                        continue
                for rv, event_type, _, obj in fresh:
                    cursor = rv
                    if obj["metadata"]["namespace"] == namespace and self._selected(obj, query):
                        self._chunk(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")
            self._chunk(b"")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler
