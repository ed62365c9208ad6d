"""Trace-driven simulation of the scheduling policies: ``ainative.simulate(trace, cluster, policy)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ainative import errors
from ainative.policy.admission import Guardrails
from ainative.policy.engine import POLICIES, PolicyConfig
from ainative.sim import cluster as cluster_file
from ainative.sim import trace as trace_file
from ainative.sim.report import Report


def simulate(trace: str | Path | Sequence[trace_file.TraceJob], cluster: str | Path | dict[str, Any],
             policy: str = "ainative", *, config: PolicyConfig | None = None,
             guardrails: Guardrails | None = None) -> Report:
    """Replay ``trace`` (CSV path or rows) on ``cluster`` (YAML path or parsed dict) under
    ``policy`` ("ainative", "fifo" or "kueue"); returns a Report (``.to_dict()``, ``.table()``)."""
    from ainative.sim import simulator

    if policy not in POLICIES:
        raise errors.ConfigError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}",
                                 field="policy", value=policy)
    rows = list(trace) if not isinstance(trace, (str, Path)) else trace_file.read(trace)
    spec = cluster_file.parse(cluster) if isinstance(cluster, dict) else cluster_file.load(cluster)
    teams = sorted({r.team for r in rows})
    queues = spec.queues or cluster_file.default_queues(spec, teams)
    known = {q.name for q in queues}
    for r in rows:
        if r.team not in known:
            raise errors.UnknownQueueError(
                f"trace job {r.job_id!r}: team {r.team!r} has no queue in the cluster file "
                f"(queues: {', '.join(sorted(known))})", field="team", value=r.team)
    cfg = config or PolicyConfig()
    if cfg.policy != policy:
        import dataclasses

        cfg = dataclasses.replace(cfg, policy=policy)
    return simulator.run(rows, spec, queues, cfg, guardrails)


__all__ = ["Report", "simulate"]
