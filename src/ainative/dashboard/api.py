"""The dashboard's JSON API: one function per resource, shared by the web server and the CLI's
``--json`` outputs so that the page and the terminal always agree.

::

    cluster.state.nodes() ──────┐
    scheduling.status() ────────┤
    events.read(<job>.jsonl) ───┼──> api.<resource>() -> a plain JSON dict ──> GET /api/v1/<resource>
    serve metrics store actors ─┤                                         └──> ainative ... --json
    cost ledger (SQLite) ───────┘

Every function answers; a missing piece (no Ray connection, no scheduler configured, no ledger
file) is ``{"available": false, "fix": "<what to run>"}`` plus empty collections, never an
exception, because a dashboard that 500s when half the control plane is not set up yet is useless
exactly when people first open it. Keys added upstream (say a new field in ``scheduling.status()``)
pass through untouched; the schema (``schema.py``) allows extra keys.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from typing import Any

API_VERSION = "v1"
TRAIN_PG_PREFIX = "ainative-train-"
SERVE_STORE_PREFIX = "ainative-serve-metrics:"
SERVE_NAMESPACE = "ainative"      # serve._runtime.NAMESPACE (not imported: that module imports ray.serve)
JOB_STATES = ("submitted", "admitted", "scheduling", "pending", "running", "restarting", "resizing",
              "stopping", "preempted", "stopped", "finished", "errored", "succeeded", "failed")
FIX_CONNECT = "start the dashboard against a running cluster: ainative dashboard --address auto"
FIX_SCHEDULER = ("no scheduler is configured: call ainative.scheduling.configure([ainative.Queue("
                 "'team-a', quota={'H100': 4})]) on the cluster (or `ainative apply` a queues spec)")


def _empty(fix: str, **collections: Any) -> dict[str, Any]:
    return {"available": False, "fix": fix, **collections}


def _ray_ready() -> bool:
    import sys

    if "ray" not in sys.modules:      # never start Ray from a read
        return False
    import ray

    return bool(ray.is_initialized())


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None, tuples lists, mapping keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------- cluster
def cluster() -> dict[str, Any]:
    """Nodes, GPUs by type, who holds each node's GPUs (gangs by placement group, endpoint
    replicas by actor) and GPUs in use that no ainative holder accounts for."""
    if not _ray_ready():
        return _empty(FIX_CONNECT, nodes=[], accelerators={}, holders=[])
    from ainative.cluster import local, state

    views = state.nodes()
    out = local.summarize(views).to_dict()
    holders = _gang_holders()
    replicas = _replica_counts()
    for node in out["nodes"]:
        held = sum(h["gpus"] for h in holders if h["node_id"] == node["node_id"])
        used = node["gpus_total"] - node["gpus_free"]
        node["gpus_used"] = used
        node["gpus_unattributed"] = max(0.0, round(used - held, 6))
        node["replicas"] = replicas.get(node["node_id"], {})
    external = _scheduler_external()
    if external is not None:   # the scheduler's own count of GPUs held by what it did not admit
        for node in out["nodes"]:
            node["gpus_external"] = float(external.get("by_node", {}).get(node["node_id"], 0.0))
    out.update(available=True, fix=None, holders=holders, ts=time.time(),
               external=None if external is None else external.get("by_type", {}))
    return clean(out)


def _scheduler_external() -> dict[str, Any] | None:
    """``scheduling.status()["external"]`` where the scheduler runs and reports it, else None."""
    from ainative import errors, scheduling

    try:
        got = scheduling.status().get("external")
    except errors.SchedulingError:
        return None
    return got if isinstance(got, dict) else None


def _gang_holders() -> list[dict[str, Any]]:
    """One row per (gang, node): training gangs are placement groups named ainative-train-<job>-<id>."""
    from ray.util import placement_group_table

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for pg_id, info in placement_group_table().items():
        if info.get("state") != "CREATED":
            continue
        name = str(info.get("name") or pg_id)
        job = name[len(TRAIN_PG_PREFIX):].rsplit("-", 1)[0] if name.startswith(TRAIN_PG_PREFIX) else name
        for idx, bundle in (info.get("bundles") or {}).items():
            node_id = (info.get("bundles_to_node_id") or {}).get(idx)
            gpus = float(bundle.get("GPU", 0.0))
            if not node_id or gpus <= 0:
                continue
            row = rows.setdefault((job, node_id), {"holder": job, "kind": "gang", "node_id": node_id,
                                                   "gpus": 0.0, "placement_group": pg_id})
            row["gpus"] += gpus
    return sorted(rows.values(), key=lambda r: (r["node_id"], r["holder"]))


def _replica_counts() -> dict[str, dict[str, int]]:
    """node id -> {endpoint: live model replicas}, from Ray's actor table (Serve names its replica
    actors SERVE_REPLICA::<app>#<deployment>#<id>)."""
    from ray._private import state as ray_state

    out: dict[str, dict[str, int]] = {}
    for actor in ray_state.actors().values():
        name = str(actor.get("Name") or "")
        if actor.get("State") != "ALIVE" or not name.startswith("SERVE_REPLICA::"):
            continue
        parts = name[len("SERVE_REPLICA::"):].split("#")
        if len(parts) < 2 or not parts[1].endswith("-model"):
            continue
        node = out.setdefault(str(actor.get("Address", {}).get("NodeID", "")), {})
        node[parts[0]] = node.get(parts[0], 0) + 1
    return out


# ----------------------------------------------------------------------------------------- queues
def queues() -> dict[str, Any]:
    """``scheduling.status()`` (every key kept) with per-queue borrowed and lent GPUs by type:
    borrowed is use above quota; a cohort's borrowed GPUs are lent by its members with idle quota,
    in proportion to that idle quota."""
    if not _ray_ready():
        return _empty(FIX_CONNECT, queues=[])
    from ainative import errors, scheduling

    try:
        status = scheduling.status()
    except errors.SchedulingError:
        return _empty(FIX_SCHEDULER, queues=[])
    status = dict(status)
    _borrow_and_lend(status.get("queues", []))
    status.update(available=True, fix=None, ts=time.time())
    return clean(status)


def _borrow_and_lend(rows: list[dict[str, Any]]) -> None:
    types = {t for q in rows for t in (*q.get("quota", {}), *q.get("used", {}))}
    for q in rows:
        quota, used = q.get("quota", {}), q.get("used", {})
        q.setdefault("borrowed", {t: max(0.0, used.get(t, 0.0) - quota.get(t, 0.0)) for t in types})
    for q in rows:
        if "lent" in q:
            continue
        lent = {}
        for t in types:
            mates = [m for m in rows if q.get("cohort") and m.get("cohort") == q.get("cohort")]
            borrowed = sum(m["borrowed"].get(t, 0.0) for m in mates)
            idle = {m["name"]: max(0.0, m.get("quota", {}).get(t, 0.0) - m.get("used", {}).get(t, 0.0))
                    for m in mates}
            total_idle = sum(idle.values())
            lent[t] = round(min(idle.get(q["name"], 0.0), borrowed * idle.get(q["name"], 0.0) / total_idle)
                            if total_idle > 0 else 0.0, 6)
        q["lent"] = lent


# ------------------------------------------------------------------------------------------- jobs
def jobs() -> dict[str, Any]:
    """Every job with an event log: its state now, queue, restarts, checkpoints and a timeline of
    its state changes (from ``ainative.events``)."""
    from ainative import events

    directory = events.events_dir()
    if not directory.exists():
        return _empty(f"no event log yet at {directory}: jobs record events there when they run "
                      "(set $AINATIVE_EVENTS_DIR or $AINATIVE_HOME to read another one)", jobs=[])
    rows = []
    for path in sorted(directory.glob("*.jsonl")):
        records = _read_lines(path)
        if records:
            rows.append(summarize_job(str(records[0].get("job") or path.stem), records))
    rows.sort(key=lambda r: -(r["last_ts"] or 0))
    return clean({"available": True, "fix": None, "events_dir": str(directory), "jobs": rows,
                  "ts": time.time()})


def _read_lines(path: Any) -> list[dict[str, Any]]:
    import json

    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:   # a line being written right now
                    continue
    except OSError:
        return []
    return out


def summarize_job(name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    timeline = [{"ts": r["ts"], "state": r["event"], "reason": r.get("reason") or r.get("status")}
                for r in records if r.get("event") in JOB_STATES]
    state = timeline[-1]["state"] if timeline else records[-1].get("event")
    if state == "finished":
        state = next((str(r.get("status")) for r in reversed(records)
                      if r.get("event") == "finished" and r.get("status")), state)
    ckpts = [r for r in records if r.get("event") == "checkpoint"]
    queue = next((r.get("queue") for r in records if r.get("queue")), None)
    metrics = [{"ts": r["ts"], "step": r.get("step"), "loss": r["loss"]} for r in records
               if isinstance(r.get("loss"), (int, float))]
    return {"name": name, "state": state, "queue": queue,
            "first_ts": records[0].get("ts"), "last_ts": records[-1].get("ts"),
            "restarts": sum(1 for r in records if r.get("event") == "restarting"),
            "failures": sum(1 for r in records if r.get("event") == "failure"),
            "preemptions": sum(1 for r in records if r.get("event") == "preempted"),
            "checkpoints": len(ckpts), "last_checkpoint": ckpts[-1].get("path") if ckpts else None,
            "last_step": max((r["step"] for r in records if isinstance(r.get("step"), int)), default=None),
            "timeline": timeline, "metrics": metrics, "events": len(records)}


def job_events(name: str, limit: int = 500) -> dict[str, Any]:
    """The job's raw event log (last ``limit`` lines) and its summary."""
    from ainative import events

    path = events.log_path(name)
    records = _read_lines(path) if path.exists() else []
    if not records:
        return _empty(f"no events for job {name!r} in {path.parent}", job=name, events=[], summary=None)
    return clean({"available": True, "fix": None, "job": name, "log_path": str(path),
                  "summary": summarize_job(name, records), "events": records[-limit:]})


# -------------------------------------------------------------------------------------- endpoints
def endpoints(window_s: float = 10.0) -> dict[str, Any]:
    """Each deployed endpoint's metrics store summary: QPS, p50/p95/p99, the SLO when reported,
    batch-size histogram, requests, failed, shed (HTTP 4xx/5xx at the ingress) and replicas."""
    if not _ray_ready():
        return _empty(FIX_CONNECT, endpoints=[])
    import ray

    rows = []
    replicas = _replica_counts()
    for named in ray.util.list_named_actors(all_namespaces=True):
        name = named["name"] if isinstance(named, dict) else str(named)
        if not name.startswith(SERVE_STORE_PREFIX):
            continue
        endpoint = name[len(SERVE_STORE_PREFIX):]
        try:
            store = ray.get_actor(name, namespace=named.get("namespace", SERVE_NAMESPACE)
                                  if isinstance(named, dict) else SERVE_NAMESPACE)
            raw = ray.get(store.summary.remote(window_s), timeout=5.0)
        except Exception as exc:  # an endpoint being deleted right now
            rows.append({"name": endpoint, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append(endpoint_row(endpoint, raw, sum(n.get(endpoint, 0) for n in replicas.values())))
    rows.sort(key=lambda r: r["name"])
    return clean({"available": True, "fix": None, "window_s": window_s, "endpoints": rows,
                  "ts": time.time()})


def endpoint_row(name: str, raw: dict[str, Any], replicas_alive: int) -> dict[str, Any]:
    """One endpoint from its metrics store's raw summary (every raw key is kept)."""
    row = {"name": name, **raw}
    row["replicas"] = replicas_alive
    row["shed_total"] = int(raw.get("shed_total", raw.get("http_4xx", 0) + raw.get("http_5xx", 0)))
    row.setdefault("latency_slo_ms", None)
    row["batch_sizes"] = {str(k): v for k, v in (raw.get("batch_sizes") or {}).items()}
    slo, p99 = row.get("latency_slo_ms"), row.get("p99_ms")
    row["slo_ok"] = None if slo is None or p99 is None else bool(p99 <= slo)
    return row


# ------------------------------------------------------------------------------------------- cost
def _ledger_path(path: str | os.PathLike[str] | None) -> str:
    from ainative.cost import ledger

    return str(path) if path is not None else str(ledger.default_path())


def cost_report(by: str = "team", since: Any = None, until: Any = None,
                path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``ainative cost report --json``: spend grouped by team, queue, job or accelerator."""
    from ainative.cost import reporting

    result = reporting.report(by=by, since=since, until=until, path=path)
    return clean({"by": result.by, "since_s": result.since_s, "until_s": result.until_s,
                  "total_usd": result.total_usd, "total_gpu_hours": result.total_gpu_hours,
                  "rows": result.to_dicts()})


def cost(since: Any = "30d", path: str | os.PathLike[str] | None = None, buckets: int = 60
         ) -> dict[str, Any]:
    """Cumulative spend per team over time (team, else queue), budget and warn lines where the
    scheduler reports queue budgets, guardrail events (warnings, stops, idle reclaims) and the
    per-team report."""
    from ainative.cost import ledger as ledger_mod, reporting

    since_s = reporting.parse_time(since, "since")   # bad input is an error even with no ledger
    where = _ledger_path(path)
    if not os.path.exists(where):
        return _empty(f"no spend ledger at {where}: meter jobs with ainative.cost.enable(prices=...) "
                      "or give a queue a budget (ainative.Queue(..., budget=ainative.Budget(usd=...)) "
                      "with prices); set $AINATIVE_LEDGER to read another ledger",
                      ledger=where, series=[], budgets={}, events=[], report=None)
    book = ledger_mod.Ledger(where)
    try:
        charges, events = book.charges(since_s), book.events()
    finally:
        book.close()
    times, series = spend_series(charges, buckets)
    stops = [e for e in events if e.get("kind") == "stop"]
    return clean({
        "available": True, "fix": None, "ledger": where, "since_s": since_s, "ts": time.time(),
        "times": times, "series": series, "budgets": _budgets(),
        "events": events[-200:],
        "idle_stops": sum(1 for e in stops if e.get("reason") == "idle"),
        "report": cost_report("team", since, None, where)})


def spend_series(charges: Iterable[Any], buckets: int = 60) -> tuple[list[float], list[dict[str, Any]]]:
    """(times, [{"team", "usd": cumulative USD at each time, "gpu_hours": ...}]): each charge
    counted when its interval ends, over ``buckets`` even steps from the first charge to the last."""
    rows = sorted(charges, key=lambda c: c.end_s)
    if not rows:
        return [], []
    lo, hi = min(c.start_s for c in rows), max(c.end_s for c in rows)
    n = max(1, buckets)
    times = [lo + (hi - lo) * i / n for i in range(n + 1)]
    teams = sorted({str(c.team or c.queue or "(none)") for c in rows})
    out = []
    for team in teams:
        mine = [c for c in rows if str(c.team or c.queue or "(none)") == team]
        usd, hours, k = [], [], 0
        acc_usd = acc_h = 0.0
        for t in times:
            while k < len(mine) and mine[k].end_s <= t + 1e-9:
                acc_usd += mine[k].cost_usd
                acc_h += mine[k].gpu_seconds / 3600.0
                k += 1
            usd.append(round(acc_usd, 6))
            hours.append(round(acc_h, 6))
        out.append({"team": team, "usd": usd, "gpu_hours": hours})
    return times, out


def _budgets() -> dict[str, Any]:
    """Queue budgets as the scheduler reports them (a ``budget`` key per queue), by queue name."""
    got = queues()
    out = {}
    for q in got.get("queues", []):
        b = q.get("budget")
        if isinstance(b, dict) and (b.get("usd") is not None or b.get("gpu_hours") is not None):
            warn_at = float(b.get("warn_at", 0.8))
            out[q["name"]] = {**b, "warn_usd": None if b.get("usd") is None else b["usd"] * warn_at}
    return out


def index() -> dict[str, Any]:
    return {"version": API_VERSION,
            "resources": ["cluster", "queues", "jobs", "jobs/{name}/events", "endpoints", "cost",
                          "cost/report", "schema"]}
