"""Ray metrics of training jobs (exported through Ray's Prometheus endpoint), recorded by the
controller from what it already receives: no extra calls into the workers.

- ``ainative_train_step_time_s`` (gauge): seconds per step between rank 0's last two reports;
- ``ainative_train_steps_per_s`` (gauge): its inverse;
- ``ainative_train_world_size`` (gauge) and ``ainative_train_restarts_total`` (counter).

Metrics are an aid: any failure to record them is logged once and never fails a job.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)
_TAGS = ("job",)


class JobMetrics:
    def __init__(self, job_name: str) -> None:
        self.tags = {"job": job_name}
        self._m: dict[str, Any] | None = None
        self._broken = False
        self._last: tuple[int, float] | None = None

    def _metrics(self) -> dict[str, Any] | None:
        if self._m is None and not self._broken:
            try:
                from ray.util import metrics

                self._m = {
                    "step_time": metrics.Gauge("ainative_train_step_time_s",
                                               "seconds per training step (rank 0)", tag_keys=_TAGS),
                    "steps_per_s": metrics.Gauge("ainative_train_steps_per_s",
                                                 "training steps per second (rank 0)", tag_keys=_TAGS),
                    "world_size": metrics.Gauge("ainative_train_world_size",
                                                "workers in the running group", tag_keys=_TAGS),
                    "restarts": metrics.Counter("ainative_train_restarts_total",
                                                "restarts after failures", tag_keys=_TAGS),
                }
            except Exception as exc:
                self._broken = True
                logger.info("Ray metrics unavailable for training jobs: %s", exc)
        return self._m

    def _record(self, name: str, value: float) -> None:
        m = self._metrics()
        if m is None:
            return
        try:
            metric = m[name]
            if name == "restarts":
                metric.inc(value, tags=self.tags)
            else:
                metric.set(value, tags=self.tags)
        except Exception as exc:
            if not self._broken:
                logger.info("could not record %s: %s", name, exc)
            self._broken = True

    def report(self, step: int, ts: float) -> None:
        if self._last is not None and step > self._last[0] and ts > self._last[1]:
            per_step = (ts - self._last[1]) / (step - self._last[0])
            self._record("step_time", per_step)
            self._record("steps_per_s", 1.0 / per_step)
        self._last = (step, ts)

    def world_size(self, n: int) -> None:
        self._last = None  # a new group: do not measure across the restart gap
        self._record("world_size", float(n))

    def restart(self) -> None:
        self._record("restarts", 1.0)
