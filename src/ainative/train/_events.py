"""Structured events of training jobs: one JSON object per line in ``<dir>/<job>.jsonl``.

Each line has ``ts`` (unix seconds), ``job`` and ``event`` plus event fields (``reason``, ``rank``,
``restarts``, ...). ``ainative logs JOB`` reads this format. The directory is
``$AINATIVE_EVENTS_DIR`` when set, else ``~/.ainative/events``. Writing an event never fails a job.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
_LOCK = threading.Lock()
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def events_dir() -> Path:
    return Path(os.environ.get("AINATIVE_EVENTS_DIR") or "~/.ainative/events").expanduser()


def events_path(job_name: str) -> Path:
    return events_dir() / f"{_SAFE.sub('_', job_name)}.jsonl"


def emit(job_name: str, event: str, **fields: Any) -> dict[str, Any]:
    """Append one event line for ``job_name`` and return the record."""
    record: dict[str, Any] = {"ts": round(time.time(), 3), "job": job_name, "event": event}
    record.update(fields)
    line = json.dumps(record, default=str)
    try:
        path = events_path(job_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK, path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as exc:  # a read-only home must not fail the training job
        logger.warning("could not write event %s for %s: %s", event, job_name, exc)
    logger.info("train job %s: %s %s", job_name, event, fields or "")
    return record


def read(job_name: str) -> list[dict[str, Any]]:
    """Every event recorded for ``job_name`` (empty when none)."""
    path = events_path(job_name)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out
