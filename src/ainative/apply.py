"""Run a validated spec file: documents in order, after *all* of them validated.

Queue, Budget and SchedulerPolicy documents configure the scheduler first (a budget attaches to its
queue; a SchedulerPolicy sets ``ai.PolicyConfig``);
Dataset documents build datasets that TrainJobs reference by name; TrainJobs run to completion;
Endpoints are deployed; KubeRayCluster documents are brought up. With ``kuberay=cluster.yaml``,
every document is placed on KubeRay instead (TrainJob -> RayJob, Endpoint -> RayService,
KubeRayCluster -> RayCluster), or the whole file is refused before anything is created
(``ainative.kuberay_apply``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ainative import spec


def apply_file(path: str, *, address: str | None = None, kuberay: str | None = None,
               dry_run: bool = False, out: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    docs = spec.load(path)
    if kuberay is not None:
        # every document placed on KubeRay, or the whole file refused (file:line) first
        from ainative import kuberay_apply

        return kuberay_apply.apply_docs(docs, kuberay, dry_run=dry_run, out=out)
    # Build every config now: all validation happens before anything runs. A dry run only finds
    # the entry points' modules and reads their source: none of the user's code runs.
    objects = {d.index: spec.build(d, import_code=not dry_run) for d in docs
               if d.kind not in ("Dataset",)}
    if dry_run:
        for d in docs:
            out(f"{d.file}: {d.kind} {d.name}: valid")
        return [{"kind": d.kind, "name": d.name, "ok": True, "dry_run": True} for d in docs]
    return _apply_ray(docs, objects, address, out)


def _apply_ray(docs: list[spec.Document], objects: dict[int, Any], address: str | None,
               out: Callable[[str], Any]) -> list[dict[str, Any]]:
    import ray

    import ainative

    started_here = not ray.is_initialized()
    cluster = ainative.connect(address)
    results: list[dict[str, Any]] = []
    _configure_queues(docs, objects, out, results)
    datasets: dict[str, Any] = {}
    for d in docs:
        if d.kind == "Dataset":
            datasets[d.name] = spec.build_dataset(d)
            out(f"Dataset {d.name}: {datasets[d.name].count()} rows")
            results.append({"kind": "Dataset", "name": d.name, "ok": True})
        elif d.kind == "TrainJob":
            job = spec.build(d, datasets) if d.data.get("datasets") else objects[d.index]
            out(f"TrainJob {d.name}: running")
            result = job.run()
            status = getattr(result, "status", "succeeded")
            out(f"TrainJob {d.name}: {status}, restarts={result.restarts}, metrics={result.metrics}")
            results.append({"kind": "TrainJob", "name": d.name, "ok": status == "succeeded",
                            "status": status, "restarts": result.restarts, "metrics": result.metrics})
        elif d.kind == "Endpoint":
            handle = objects[d.index].deploy()
            out(f"Endpoint {d.name}: serving at {handle.url}")
            results.append({"kind": "Endpoint", "name": d.name, "ok": True, "url": handle.url})
        elif d.kind == "KubeRayCluster":
            from ainative.cluster import kuberay

            up = kuberay.up(objects[d.index])
            out(f"KubeRayCluster {d.name}: ready at {up.address}")
            results.append({"kind": "KubeRayCluster", "name": d.name, "ok": True,
                            "address": up.address})
    # an embedded Ray that apply itself started ends with it, unless an endpoint is serving on it
    if started_here and cluster.owned and not any(r["kind"] == "Endpoint" for r in results):
        cluster.shutdown()
    return results


def _configure_queues(docs: list[spec.Document], objects: dict[int, Any], out: Callable[[str], Any],
                      results: list[dict[str, Any]]) -> None:
    import dataclasses

    from ainative import scheduling

    queues = {d.name: objects[d.index] for d in docs if d.kind == "Queue"}
    for d in docs:
        if d.kind == "Budget":
            name = d.data["queue"]
            if name not in queues:
                raise d.error(("queue",), f"budget for queue {name!r}, which this file does not define")
            queues[name] = dataclasses.replace(queues[name], budget=objects[d.index])
    policies = [d for d in docs if d.kind == "SchedulerPolicy"]
    if len(policies) > 1:
        raise policies[1].error((), "a file may hold one 'kind: SchedulerPolicy' document; merge them")
    if queues or policies:
        policy = objects[policies[0].index] if policies else None
        scheduling.configure(list(queues.values()), policy=policy)
        out(f"configured queues: {', '.join(queues) or '(default only)'}")
        results.extend({"kind": "Queue", "name": n, "ok": True} for n in queues)
