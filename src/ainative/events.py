"""Structured per-job event log: one JSON object per line in ``<events dir>/<job>.jsonl``.

Every controller (training, serving, scheduling, guardrails) records state transitions, failures
and decisions with their reasons here; ``ainative logs JOB`` prints and follows the file. Each
line has ``ts`` (unix seconds), ``job``, ``event`` and free-form fields such as ``reason``.
The directory is ``$AINATIVE_EVENTS_DIR``, else ``$AINATIVE_HOME/events``, else
``~/.ainative/events``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
_LOCK = threading.Lock()
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def events_dir() -> Path:
    if os.environ.get("AINATIVE_EVENTS_DIR"):
        return Path(os.environ["AINATIVE_EVENTS_DIR"]).expanduser()
    from ainative.config import home_dir

    return home_dir() / "events"


def log_path(job: str) -> Path:
    return events_dir() / f"{_SAFE.sub('_', job) or 'job'}.jsonl"


def emit(job: str, event: str, **fields: Any) -> dict[str, Any]:
    """Append one event; never raises (an event log must not break the job it describes)."""
    record = {"ts": round(time.time(), 3), "job": job, "event": event, **fields}
    try:
        path = log_path(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=str, sort_keys=False)
        with _LOCK, open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as exc:  # a read-only home must not fail the job
        logger.warning("could not write event %s for %s: %s", event, job, exc)
    return record


def read(job: str) -> list[dict[str, Any]]:
    path = log_path(job)
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def follow(job: str, *, poll_s: float = 0.5, stop_after_s: float | None = None,
           until_events: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """Yield events as they are appended (like ``tail -f``); stops after ``stop_after_s`` or at
    the first event named in ``until_events``."""
    path = log_path(job)
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
    offset = 0
    while deadline is None or time.monotonic() < deadline:
        if path.exists():
            with open(path, encoding="utf-8") as f:
                f.seek(offset)
                for line in f:
                    if not line.endswith("\n"):
                        break
                    offset += len(line.encode("utf-8"))
                    record = json.loads(line)
                    yield record
                    if record.get("event") in until_events:
                        return
        time.sleep(poll_s)


def format_event(record: dict[str, Any]) -> str:
    ts = time.strftime("%H:%M:%S", time.localtime(record.get("ts", 0)))
    rest = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("ts", "job", "event"))
    return f"{ts} {record.get('job')} {record.get('event')} {rest}".rstrip()
