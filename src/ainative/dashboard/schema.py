"""The JSON schema of the dashboard API (``/api/v1/...``), generated from the declarations below
and shipped as ``api.schema.json`` (a unit test checks the file is current and that every API
function's output validates). Objects allow extra keys: upstream may add fields, clients ignore
what they do not know. Regenerate with
``python -c 'from ainative.dashboard import schema; schema.write_schema()'``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NUM: dict[str, Any] = {"type": "number"}
INT: dict[str, Any] = {"type": "integer"}
STR: dict[str, Any] = {"type": "string"}
BOOL: dict[str, Any] = {"type": "boolean"}


def opt(s: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [s, {"type": "null"}]}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def mapping(values: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": values}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    props = {**required, **(optional or {})}
    return {"type": "object", "required": sorted(required), "properties": props,
            "additionalProperties": True}


# Every response: whether the piece exists, and what to run when it does not.
BASE = {"available": BOOL, "fix": opt(STR)}

NODE = obj({"node_id": STR, "address": STR, "accelerator_type": opt(STR), "gpus_total": NUM,
            "gpus_free": NUM, "cpus_total": NUM, "cpus_free": NUM, "memory_bytes": NUM,
            "object_store_bytes": NUM, "is_head": BOOL},
           {"gpus_used": NUM, "gpus_unattributed": NUM, "gpus_external": NUM, "replicas": mapping(INT)})
GPUS_BY_TYPE = mapping(NUM)
HOLDER = obj({"holder": STR, "kind": STR, "node_id": STR, "gpus": NUM})
CLUSTER = obj({**BASE, "nodes": arr(NODE), "holders": arr(HOLDER),
               "accelerators": mapping(obj({"type": STR, "total": NUM, "free": NUM, "nodes": INT}))},
              {"cpus_total": NUM, "cpus_free": NUM, "memory_bytes": NUM, "object_store_bytes": NUM,
               "external": opt(GPUS_BY_TYPE), "ts": NUM})

GPUS = mapping(NUM)
QUEUE_BUDGET = obj({}, {"usd": opt(NUM), "gpu_hours": opt(NUM), "period": opt(STR), "warn_at": NUM,
                        "action": STR})
PENDING = obj({"job_id": STR, "why": STR}, {"priority": NUM})
QUEUE = obj({"name": STR, "quota": GPUS, "used": GPUS, "borrowed": GPUS, "lent": GPUS,
             "running": arr(STR), "pending": arr(PENDING)},
            {"cohort": opt(STR), "weight": NUM, "share": NUM, "borrowing_limit": opt(GPUS),
             "lending_limit": opt(GPUS), "budget": opt(QUEUE_BUDGET)})
QUEUES = obj({**BASE, "queues": arr(QUEUE)},
             {"capacity": GPUS, "free": GPUS, "preemptions": INT, "warnings": arr(STR),
              "policy": STR, "ts": NUM})

STATE_CHANGE = obj({"ts": NUM, "state": STR}, {"reason": opt(STR)})
JOB = obj({"name": STR, "state": opt(STR), "restarts": INT, "checkpoints": INT, "timeline": arr(STATE_CHANGE),
           "metrics": arr(obj({"ts": NUM, "loss": NUM}, {"step": opt(INT)}))},
          {"queue": opt(STR), "first_ts": opt(NUM), "last_ts": opt(NUM), "failures": INT,
           "preemptions": INT, "last_checkpoint": opt(STR), "last_step": opt(INT), "events": INT})
JOBS = obj({**BASE, "jobs": arr(JOB)}, {"events_dir": STR, "ts": NUM})
EVENT = obj({"ts": NUM, "job": STR, "event": STR})
JOB_EVENTS = obj({**BASE, "job": STR, "events": arr(EVENT), "summary": opt(JOB)}, {"log_path": STR})

SAMPLE = obj({"ts": NUM}, {k: opt(NUM) for k in ("qps", "p50_ms", "p99_ms", "replicas", "requests_total",
                                                 "failed_total", "shed_total", "queue_length")})
ENDPOINT = obj({"name": STR},
               {"qps": NUM, "p50_ms": opt(NUM), "p95_ms": opt(NUM), "p99_ms": opt(NUM),
                "latency_slo_ms": opt(NUM), "slo_ok": opt(BOOL), "replicas": INT,
                "replicas_reporting": INT, "batch_sizes": mapping(INT), "requests_total": INT,
                "failed_total": INT, "shed_total": INT, "queue_length": NUM, "replica_seconds": NUM,
                "history": arr(SAMPLE), "error": STR})
ENDPOINTS = obj({**BASE, "endpoints": arr(ENDPOINT)}, {"window_s": NUM, "ts": NUM})

REPORT_ROW = obj({"key": opt(STR), "gpu_hours": NUM, "cost_usd": NUM, "charges": INT},
                 {"first_s": opt(NUM), "last_s": opt(NUM)})
COST_REPORT = obj({"by": STR, "total_usd": NUM, "total_gpu_hours": NUM, "rows": arr(REPORT_ROW)},
                  {"since_s": opt(NUM), "until_s": opt(NUM)})
BUDGET = obj({}, {"usd": opt(NUM), "gpu_hours": opt(NUM), "period": opt(STR), "warn_at": NUM,
                  "warn_usd": opt(NUM)})
COST = obj({**BASE, "series": arr(obj({"team": STR, "usd": arr(NUM), "gpu_hours": arr(NUM)})),
            "budgets": mapping(BUDGET), "events": arr({"type": "object"})},
           {"ledger": STR, "times": arr(NUM), "since_s": opt(NUM), "idle_stops": INT,
            "report": opt(COST_REPORT), "ts": NUM})

RESOURCES = {"cluster": CLUSTER, "queues": QUEUES, "jobs": JOBS, "job_events": JOB_EVENTS,
             "endpoints": ENDPOINTS, "cost": COST, "cost_report": COST_REPORT}
PATHS = {"cluster": "/api/v1/cluster", "queues": "/api/v1/queues", "jobs": "/api/v1/jobs",
         "job_events": "/api/v1/jobs/{name}/events", "endpoints": "/api/v1/endpoints",
         "cost": "/api/v1/cost", "cost_report": "/api/v1/cost/report"}


def json_schema() -> dict[str, Any]:
    """One definition per resource, with the path that serves it."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "ainative dashboard API v1",
            "$defs": {name: {**s, "description": f"GET {PATHS[name]}"} for name, s in RESOURCES.items()}}


def resource_schema(name: str) -> dict[str, Any]:
    """A standalone schema for one resource (for validators)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **json_schema()["$defs"][name]}


def schema_file() -> Path:
    return Path(__file__).with_name("api.schema.json")


def write_schema() -> Path:
    path = schema_file()
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
