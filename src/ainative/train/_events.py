"""Training events go to the project-wide structured event log (``ainative.events``): one JSON
object per line in ``<events dir>/<job>.jsonl`` with ``ts``, ``job``, ``event`` and fields such
as ``reason``, ``rank`` and ``restarts``; ``ainative logs JOB`` prints and follows it."""

from __future__ import annotations

import logging
from typing import Any

from ainative import events

logger = logging.getLogger(__name__)
read = events.read


def emit(job_name: str, event: str, **fields: Any) -> dict[str, Any]:
    """Record one event (never fails the job) and log it."""
    record = events.emit(job_name, event, **fields)
    logger.info("train job %s: %s %s", job_name, event, fields or "")
    return record
