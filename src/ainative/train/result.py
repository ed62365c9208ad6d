"""What a finished training job returns."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class TrainResult:
    """The outcome of ``TrainJob.run()`` / ``handle.wait()``."""

    metrics: dict[str, Any]
    """Rank 0's last report."""
    checkpoint: str | None
    """The latest committed checkpoint (a local path, or the URI on remote storage), or None."""
    restarts: int
    """Restarts after failures (elastic resizes at a checkpoint are not counted)."""
    history: list[dict[str, Any]]
    """Every rank-0 report across restarts, in order (steps after a checkpoint that were re-run
    after a failure appear again)."""
    status: str = "succeeded"
    """"succeeded" or "stopped: <reason>" (a failed job raises instead of returning)."""
    world_size: int = 0
    """Workers in the last attempt."""
    name: str = ""
    """The job's name (checkpoints live under ``<path>/<name>``)."""
