"""The one discrete-event loop of the simulators: the policy engine driven by simulated time.

Both ``ainative.simulate`` (``sim/simulator.py``: JCT, waits, utilisation, fairness) and the cost
replay (``sim/guardrails.py``: spend and waste with and without guardrails) are a ``Replay``
subclass that says what a submission is, how long a started job runs and what to record.

::

    heap of events ──> all events at one instant ──> Engine.schedule(now) ──> started / preempted /
      submit (1)         submit: Replay.submit()        (again while it       stopped: hooks record;
      end (0)            end: Engine.finish()            preempts or stops)    a start pushes its end
      wake (2)           wake: nothing (a pass)     ──> on_instant(): may ask for a wake-up

An end event carries the start time of the run it ends, so the end of a run that was preempted
(and restarted later) is recognised as stale and ignored. When nothing was freed at an instant, an
``incremental`` replay's pass looks only at the newly submitted jobs (every other pending job was
blocked a moment ago and still is), which keeps 100,000 jobs fast.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from ainative.policy.admission import Job
from ainative.policy.engine import Engine

END, SUBMIT, WAKE = 0, 1, 2


class Replay:
    """Override ``submit`` and ``run_time``; the ``on_*`` hooks default to doing nothing."""

    max_passes = 8
    """Passes per instant: what a pass's victims or stops freed may start others at once."""
    incremental = True
    """Pass only over the jobs submitted at this instant when nothing was freed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._heap: list[tuple[float, int, int, str, float]] = []
        self._seq = 0
        self._wakes: set[float] = set()

    # ---- what a client says ------------------------------------------------------------------
    def submit(self, job_id: str, now: float) -> bool:
        """Queue the job in the engine; False when it was refused (and recorded as such)."""
        raise NotImplementedError

    def run_time(self, job: Job) -> float:
        """How long a job that just started holds its GPUs if nobody stops it."""
        raise NotImplementedError

    def outcome(self, job_id: str) -> str:
        return "succeeded"

    def on_time(self, now: float) -> None:
        """Simulated time moves to ``now`` (before the instant's events)."""

    def on_start(self, job: Job, now: float) -> None: ...

    def on_end(self, job: Job, now: float) -> None: ...

    def on_preempt(self, job: Job, now: float) -> None: ...

    def on_stop(self, job: Job, stop: Any, now: float) -> None: ...

    def on_instant(self, now: float, instants: int) -> float | None:
        """After the passes of one instant; may return a time to wake up at (a pass then)."""
        return None

    # ---- the loop ----------------------------------------------------------------------------
    def submissions(self, items: Iterable[tuple[float, str]]) -> None:
        for t, job_id in items:
            self._push(t, SUBMIT, job_id, 0.0)

    def _push(self, t: float, kind: int, job_id: str, start: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, job_id, start))

    def run(self) -> None:
        heap, engine, instants = self._heap, self.engine, 0
        while heap:
            now = heap[0][0]
            self.on_time(now)
            new: list[str] = []
            freed = False
            while heap and heap[0][0] == now:
                _, kind, _, job_id, start = heapq.heappop(heap)
                if kind == SUBMIT:
                    if self.submit(job_id, now):
                        new.append(job_id)
                elif kind == END:
                    job = engine.running.get(job_id)
                    if job is not None and job.start_s == start:
                        engine.finish(job_id, now, self.outcome(job_id))
                        self.on_end(job, now)
                        freed = True
                else:
                    freed = True
            self._wakes.discard(now)
            only = None if freed or instants == 0 or not self.incremental else new
            self._passes(now, only)
            instants += 1
            wake = self.on_instant(now, instants)
            if wake is not None and wake not in self._wakes:
                self._wakes.add(wake)
                self._push(wake, WAKE, "", 0.0)

    def _passes(self, now: float, only: list[str] | None) -> None:
        dec = self.engine.schedule(now, only)
        for k in range(self.max_passes):
            for job in dec.started:
                self._push(now + self.run_time(job), END, job.job_id, job.start_s or now)
                self.on_start(job, now)
            for job in dec.preempted:
                self.on_preempt(job, now)
            for job, stop in dec.stopped:
                self.on_stop(job, stop, now)
            if not (dec.preempted or dec.stopped) or k == self.max_passes - 1:
                break
            dec = self.engine.schedule(now)
