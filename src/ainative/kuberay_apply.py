"""Spec files on KubeRay: ``ainative up``/``submit`` cluster files and ``apply --kuberay``
(golden-path layer, beside ``apply.py``: it reads specs through ``ainative.spec``).

::

    spec file ──► ainative.spec.load (file:line) ──► plan(): every document placed or refused
                                                       │  TrainJob       -> RayJob
                                                       │  Endpoint       -> RayService
                                                       │  KubeRayCluster -> RayCluster
                                                       │  Queue, Budget, Dataset -> refused
                                                       ▼  (SpecError file:line, nothing created)
                                        all manifests valid ──► create (clusters, services,
                                                                jobs) ──► wait for the jobs

Queue, Budget and Dataset documents configure ainative's scheduler and build datasets in *this*
process; RayJobs and RayServices run in clusters of their own where neither exists, so such a
file is refused as a whole rather than half-applied (on Kubernetes, admission is the gang
scheduler's: ``KubeRayClusterConfig(gang_scheduler=..., queue=...)``). The only seam with the
spec loader is ``spec.load`` / ``spec.build`` / ``Document.error``; a YAML or file error of a
cluster file becomes a ``SpecError`` with file:line here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ainative import errors

REFUSED = {
    "Queue": "Queue documents configure ainative's scheduler in this process; RayJobs and "
             "RayServices run in Ray clusters of their own, where it does not run. On Kubernetes "
             "set gang_scheduler and queue in the KubeRayCluster spec (Kueue, Volcano, YuniKorn), "
             "or apply this file without --kuberay",
    "Budget": "Budget documents attach to ainative's scheduler queues in this process, which do "
              "not run inside RayJobs or RayServices; apply this file without --kuberay, or "
              "remove the Budget",
    "Dataset": "Dataset documents build datasets in this process, which a RayJob's own cluster "
               "cannot see; read the data inside the train function, or apply this file "
               "without --kuberay",
}


@dataclasses.dataclass
class Placement:
    """One document and what it becomes on KubeRay."""

    doc: Any
    kind: str  # RayCluster, RayJob, RayService
    manifest: dict[str, Any]
    obj: Any  # the built config (TrainJob, Endpoint, KubeRayClusterConfig)


def _line_of_key(text: str, key: str) -> int:
    match = re.search(rf"^{re.escape(key)}\s*:", text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise errors.SpecError(f"{path}: cannot read spec file: {reason}", file=path, line=0,
                               field="(file)") from None


def _yaml_docs(path: str, text: str) -> list[Any]:
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise errors.SpecError(f"{path}:{line}: not valid YAML: {exc}", file=path, line=line,
                               field="(document)") from None
    except RecursionError:
        raise errors.SpecError(f"{path}: YAML nested too deeply", file=path, line=1,
                               field="(document)") from None


def load_cluster_spec(path: str) -> Any:
    """The KubeRayClusterConfig of a cluster file: one ``kind: KubeRayCluster`` document (loaded
    through ``ainative.spec``) or one bare mapping of its fields. Every problem is a SpecError
    (a ConfigError) with file:line."""
    from ainative import spec
    from ainative.cluster.kuberay.config import KubeRayClusterConfig

    text = _read(path)
    docs = _yaml_docs(path, text)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise errors.SpecError(f"{path}:1: expected one KubeRayCluster document (a mapping), "
                               f"found {len(docs)} document(s)", file=path, line=1, field="kind")
    if docs[0].get("kind") is not None:
        loaded = spec.load(path)
        if len(loaded) != 1 or loaded[0].kind != "KubeRayCluster":
            raise loaded[0].error(("kind",), "a cluster file holds one 'kind: KubeRayCluster'")
        return _built(loaded[0], spec.build)
    try:
        return KubeRayClusterConfig.from_dict(docs[0])
    except errors.SpecError:
        raise
    except errors.ConfigError as exc:
        field = str(exc.details.get("field") or "")
        line = _line_of_key(text, field.split(".")[0].split("[")[0]) if field else 1
        raise errors.SpecError(f"{path}:{line}: {exc}", file=path, line=line,
                               field=field or "(document)") from None


def _built(doc: Any, build: Callable[[Any], Any]) -> Any:
    """``build(doc)``, with a ConfigError from a constructor given the document's file:line."""
    try:
        return build(doc)
    except errors.SpecError:
        raise
    except errors.ConfigError as exc:
        field = exc.details.get("field")
        raise doc.error((field,) if isinstance(field, str) and field in doc.data else (),
                        str(exc)) from None


def load_jobs(path: str) -> list[Any]:
    """The jobs of ``ainative submit``: TrainJob documents, or bare ``{name, entrypoint}``
    documents. Any other kind is refused with its file:line (never skipped)."""
    from ainative import spec

    text = _read(path)
    docs = _yaml_docs(path, text)
    if any(isinstance(d, dict) and d.get("kind") for d in docs):
        loaded = spec.load(path)
        for d in loaded:
            if d.kind != "TrainJob":
                raise d.error(("kind",), f"`ainative submit` runs TrainJob documents; a {d.kind} "
                              "cannot be submitted as a RayJob (use `ainative apply --kuberay`)")
        return [_built(d, spec.build) for d in loaded]
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or set(d) - {"name", "entrypoint"}:
            raise errors.SpecError(f"{path}: document {i + 1} must be kind: TrainJob or have only "
                                   f"'name' and 'entrypoint'; got {d!r}", file=path, line=1,
                                   field="kind")
    return docs


def _place(doc: Any, cluster: Any, import_code: bool = True) -> Placement:
    from ainative import spec
    from ainative.cluster.kuberay import manifests

    if doc.kind in REFUSED:
        raise doc.error(("kind",), f"cannot be placed on KubeRay: {REFUSED[doc.kind]}")
    if doc.kind == "TrainJob" and doc.data.get("datasets"):
        raise doc.error(("datasets",), "a TrainJob on KubeRay cannot use Dataset documents "
                        "(they are built in this process); read the data in the train function")
    if doc.kind in ("TrainJob", "Endpoint") and doc.data.get("queue") is not None:
        raise doc.error(("queue",), f"a {doc.kind} on KubeRay cannot name an ainative queue "
                        "(the scheduler does not run in its cluster); set gang_scheduler and "
                        "queue in the KubeRayCluster spec instead")
    obj = _built(doc, lambda d: spec.build(d, import_code=import_code))
    builders: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "TrainJob": ("RayJob", lambda: manifests.rayjob_manifest(obj, cluster)),
        "Endpoint": ("RayService", lambda: manifests.rayservice_manifest(obj, cluster)),
        "KubeRayCluster": ("RayCluster", lambda: manifests.raycluster_manifest(obj)),
    }
    if doc.kind not in builders:
        raise doc.error(("kind",), f"cannot be placed on KubeRay: no mapping for {doc.kind}")
    kind, make = builders[doc.kind]
    return Placement(doc, kind, _built(doc, lambda _d: make()), obj)


def plan(docs: Sequence[Any], cluster: Any, *, import_code: bool = True) -> list[Placement]:
    """Every document as a validated manifest, or a SpecError (file:line, the kind it cannot
    place) before anything is created. ``import_code=False`` (dry runs): entry points and models
    are found and checked in their source, none of the user's code runs."""
    placements = [_place(d, cluster, import_code) for d in docs]
    names: dict[tuple[str, str], Any] = {}
    for p in placements:
        key = (p.kind, p.manifest["metadata"]["name"])
        if key in names:
            raise p.doc.error(("name",), f"becomes {p.kind} {key[1]!r}, as does the document at "
                              f"line {names[key].line_of(())}; rename one")
        names[key] = p.doc
    return placements


def apply_docs(docs: Sequence[Any], cluster_file: str, *, dry_run: bool = False,
               client: Any = None, wait_timeout_s: float = 3600.0,
               out: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """``ainative apply --kuberay``: place every document or refuse the whole file."""
    cluster = load_cluster_spec(cluster_file)
    placements = plan(docs, cluster, import_code=not dry_run)
    if dry_run:
        for p in placements:
            meta = p.manifest["metadata"]
            out(f"{p.doc.file}: {p.doc.kind} {p.doc.name} -> {p.kind} {meta['namespace']}/"
                f"{meta['name']}: valid")
        return [{"kind": p.doc.kind, "name": p.doc.name, "ok": True, "dry_run": True,
                 "object": f"{p.kind}/{p.manifest['metadata']['name']}"} for p in placements]
    return _execute(placements, cluster, client, wait_timeout_s, out)


def _execute(placements: list[Placement], cluster: Any, client: Any, wait_timeout_s: float,
             out: Callable[[str], Any]) -> list[dict[str, Any]]:
    from ainative.cluster.kuberay import client as kclient
    from ainative.cluster.kuberay import ops

    kc = client if client is not None else kclient.KubeRayClient()
    order = {"RayCluster": 0, "RayService": 1, "RayJob": 2}
    results: list[dict[str, Any]] = []
    jobs = []
    for p in sorted(placements, key=lambda p: order[p.kind]):
        name = p.doc.name
        if p.kind == "RayCluster":
            up = ops.up(p.obj, client=kc)
            out(f"KubeRayCluster {name}: ready at {up.address}")
            results.append({"kind": "KubeRayCluster", "name": name, "ok": True,
                            "address": up.address, "created": up.created})
        elif p.kind == "RayService":
            svc = ops.serve(p.obj, cluster, client=kc)
            out(f"Endpoint {name} on KubeRay: RayService {svc.namespace}/{svc.name} at {svc.url}")
            results.append({"kind": "Endpoint", "name": name, "ok": True, "url": svc.url,
                            "created": svc.created})
        else:
            handle = ops.submit(p.obj, cluster, client=kc)
            out(f"TrainJob {name} on KubeRay: RayJob {handle.namespace}/{handle.name} submitted")
            jobs.append((name, handle))
    for name, handle in jobs:
        final = handle.wait(timeout_s=wait_timeout_s)
        out(f"TrainJob {name} on KubeRay: {final.deployment_status} {final.job_status}")
        results.append({"kind": "TrainJob", "name": name, "ok": final.succeeded,
                        "status": f"{final.deployment_status}/{final.job_status}",
                        "rayjob": handle.name})
    return results
