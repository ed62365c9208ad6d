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
    """Append one event; never raises (an event log must not break the job it describes).

    A field that JSON cannot encode is written as its ``repr``; an unwritable directory is a
    logged warning."""
    record = {"ts": round(time.time(), 3), "job": job, "event": event, **fields}
    try:
        line = _encode(record)
        path = log_path(str(job))
        path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK, open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except Exception as exc:  # a read-only home or a broken value must not fail the job
        try:
            logger.warning("could not write event %r for %r: %s", event, job, exc)
        except Exception:  # noqa: S110 - even logging a hostile repr must not raise
            pass
    return record


def _encode(record: dict[str, Any]) -> str:
    """One JSON line; values JSON cannot take (cycles, odd keys, deep nesting) become reprs."""
    try:
        return json.dumps(record, default=str)
    except Exception:  # noqa: BLE001 - any failure falls back to reprs, field by field
        return json.dumps({str(key): _plain(value) for key, value in record.items()})


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return repr(value)[:10_000]
    except Exception:  # noqa: BLE001 - a __repr__ that raises
        return f"<unrepresentable {type(value).__name__}>"


def _parse(raw: bytes) -> dict[str, Any] | None:
    """One line -> its event, or None when it is not a JSON object (torn write, corruption)."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def read_counted(job: str) -> tuple[list[dict[str, Any]], int]:
    """The job's events and the number of lines skipped because they could not be parsed (a
    half-written last line after a crash, a corrupted byte)."""
    path = log_path(job)
    records: list[dict[str, Any]] = []
    skipped = 0
    try:
        with open(path, "rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                record = _parse(raw)
                if record is None:
                    skipped += 1
                else:
                    records.append(record)
    except FileNotFoundError:
        return [], 0
    if skipped:
        logger.warning("%s: skipped %d unparsable line(s)", path, skipped)
    return records, skipped


def read(job: str) -> list[dict[str, Any]]:
    """The job's events, oldest first; unparsable lines are skipped (see ``read_counted``)."""
    return read_counted(job)[0]


def follow(job: str, *, poll_s: float = 0.5, stop_after_s: float | None = None,
           until_events: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """Yield events as they are appended (like ``tail -f``); stops after ``stop_after_s`` or at
    the first event named in ``until_events``. A line is read once it ends with a newline; a
    complete line that cannot be parsed is skipped with a warning."""
    path = log_path(job)
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
    offset = 0
    while deadline is None or time.monotonic() < deadline:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break
                    offset += len(raw)
                    if not raw.strip():
                        continue
                    record = _parse(raw)
                    if record is None:
                        logger.warning("%s: skipped an unparsable line at byte %d", path,
                                       offset - len(raw))
                        continue
                    yield record
                    if record.get("event") in until_events:
                        return
        time.sleep(poll_s)


def format_event(record: dict[str, Any]) -> str:
    stamp = record.get("ts", 0)
    try:
        ts = time.strftime("%H:%M:%S", time.localtime(float(stamp)))
    except (TypeError, ValueError, OverflowError, OSError):
        ts = str(stamp)
    rest = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("ts", "job", "event"))
    return f"{ts} {record.get('job')} {record.get('event')} {rest}".rstrip()
