"""Cluster file (YAML): node groups and queues, validated with errors naming the field."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ainative import errors
from ainative.policy.queues import Queue


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSpec:
    """Nodes as (name, gpu_type, gpus) and the configured queues (may be empty)."""

    nodes: tuple[tuple[str, str, float], ...]
    queues: tuple[Queue, ...]
    cpus: tuple[float, ...] = ()
    """CPU cores of each node, in ``nodes``' order (0: not modelled). Only the FGD measurement
    counts them; the policy simulation places GPUs."""

    def capacity(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for _, t, g in self.nodes:
            out[t] = out.get(t, 0.0) + g
        return out


def _err(path: str, where: str, value: Any, want: str) -> errors.SpecError:
    return errors.SpecError(f"{path}: {where}={value!r}: {want}", file=path, field=where, value=value)


def parse(doc: Any, path: str = "<cluster>") -> ClusterSpec:
    if not isinstance(doc, dict) or not isinstance(doc.get("node_groups"), list) or not doc["node_groups"]:
        raise errors.SpecError(f"{path}: needs a non-empty 'node_groups' list, e.g. node_groups: "
                               "[{count: 4, gpus_per_node: 8, gpu_type: H100}]", file=path,
                               field="node_groups")
    nodes: list[tuple[str, str, float]] = []
    cpus: list[float] = []
    for k, g in enumerate(doc["node_groups"]):
        where = f"node_groups[{k}]"
        if not isinstance(g, dict):
            raise _err(path, where, g, "must be a mapping")
        unknown = set(g) - {"count", "gpus_per_node", "gpu_type", "cpus", "name"}
        if unknown:
            raise _err(path, f"{where}.{sorted(unknown)[0]}", g[sorted(unknown)[0]], "unknown field")
        count, per = g.get("count"), g.get("gpus_per_node")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise _err(path, f"{where}.count", count, "must be an integer >= 1")
        if not isinstance(per, int) or isinstance(per, bool) or not 1 <= per <= 64:
            raise _err(path, f"{where}.gpus_per_node", per, "must be an integer in [1, 64]")
        gpu_type = g.get("gpu_type")
        if not isinstance(gpu_type, str) or not gpu_type.strip():
            raise _err(path, f"{where}.gpu_type", gpu_type, "must name the accelerator type, e.g. H100")
        cores = g.get("cpus", 0)
        if isinstance(cores, bool) or not isinstance(cores, (int, float)) or not 0 <= cores <= 100_000:
            raise _err(path, f"{where}.cpus", cores, "must be a number of CPU cores in [0, 100000]")
        for n in range(count):
            nodes.append((f"{gpu_type.upper()}-{k}-{n}", gpu_type.upper(), float(per)))
            cpus.append(float(cores))
    queues = []
    for k, q in enumerate(doc.get("queues") or []):
        if not isinstance(q, dict) or "name" not in q:
            raise _err(path, f"queues[{k}]", q, "must be a mapping with a name")
        try:
            queues.append(Queue(q["name"], **{f: v for f, v in q.items() if f != "name"}))
        except TypeError as exc:
            raise _err(path, f"queues[{k}]", q, f"unknown field ({exc})") from None
        except errors.ConfigError as exc:
            raise errors.SpecError(f"{path}: queues[{k}]: {exc}", file=path, field=f"queues[{k}]") from exc
    return ClusterSpec(tuple(nodes), tuple(queues), tuple(cpus))


def load(path: str | Path) -> ClusterSpec:
    """A cluster file, read with the spec loader's limits and rules (``ainative.safeyaml``: size,
    depth, nodes, aliases; plain types, string keys, no duplicates): SpecError with file:line."""
    from ainative import safeyaml

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise errors.SpecError(f"cannot read cluster file {path}: {exc}", file=str(path)) from exc
    docs = [d for d, _, _ in safeyaml.load_documents(data, str(path))]
    if len(docs) != 1:
        raise errors.SpecError(f"{path}: a cluster file holds one YAML document, found {len(docs)}",
                               file=str(path))
    return parse(docs[0], str(path))


def default_queues(spec: ClusterSpec, teams: Sequence[str]) -> tuple[Queue, ...]:
    """No queues in the file: one per team, equal split of each GPU type, one cohort."""
    cap, n = spec.capacity(), len(teams)
    out = []
    for k, team in enumerate(sorted(teams)):
        quota = {t: float(int(c // n) + (1 if k >= n - int(c % n) else 0)) for t, c in cap.items()}
        out.append(Queue(team, quota=quota, cohort="all"))
    return tuple(out)
