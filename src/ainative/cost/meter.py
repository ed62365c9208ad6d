"""The wall-clock meter: the pure ``Guardrails`` plus the durable ``Ledger``.

::

    admit(spec) ─> Guardrails.admit ─refuse─> event row, Decision returned (caller raises)
    start(spec) ─> meters row (job, spec, started_s, last_meter_s)
    poll(job, utilization, restarts) ─> Guardrails.meter(now) ─> charges + decisions
                                         └─> ONE ledger transaction: charges, meter mark, events
    finish(job, outcome) ─> ONE ledger transaction: last charges, end event, meters row
                            deleted (a crash leaves the meter open or closed, never half)

``Meter.open`` seeds the spend book from every ledger row and resumes the jobs still in ``meters``
at their last mark, so a restarted meter (say, a killed scheduler actor) loses nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from ainative.cost import ledger as ledger_mod
from ainative.policy.cost import guardrails as g
from ainative.policy import pricing

log = logging.getLogger("ainative.cost")


class Meter:
    """Thread-safe; one per ledger (the head node's meter actor, or a driver without one)."""

    def __init__(self, ledger: ledger_mod.Ledger, rails: g.Guardrails,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger, self.rails, self.clock = ledger, rails, clock
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | None = None, *, prices: pricing.PriceTable | None = None,
             queue_budgets: Mapping[str, pricing.Budget] | None = None,
             queue_max_runtime_s: Mapping[str, float] | None = None,
             config: g.GuardrailConfig | None = None,
             clock: Callable[[], float] = time.time) -> Meter:
        """Open (or create) the ledger at ``path`` and resume from it."""
        ledger = ledger_mod.Ledger(path)
        rails = g.Guardrails(prices, queue_budgets=queue_budgets, queue_max_runtime_s=queue_max_runtime_s,
                             config=config, book=g.SpendBook(ledger.charges()))
        for spec, started_s, last_meter_s in ledger.meters():
            rails.start(spec, started_s, last_meter_s=last_meter_s)
            log.info("cost meter resumed %r from the ledger (last charged at %.3f)", spec.name,
                     last_meter_s)
        return cls(ledger, rails, clock)

    def admit(self, spec: g.JobSpec) -> g.Decision:
        with self._lock:
            now = self.clock()
            decision = self.rails.admit(spec, now)
            if decision.kind == "refuse":
                log.warning("admission refused: %s", decision.message)
                self.ledger.record((), events=[(now, spec.name, "refuse", decision.reason,
                                                decision.message)])
            return decision

    def start(self, spec: g.JobSpec) -> None:
        with self._lock:
            now = self.clock()
            self.rails.start(spec, now)
            self.ledger.open_meter(spec, now)

    def poll(self, job: str, *, utilization: float | None = None,
             restarts: int | None = None) -> list[g.Decision]:
        """Charge the time since the last poll; return warnings, flags and at most one stop."""
        with self._lock:
            if job not in self.rails.running():
                return []
            now = self.clock()
            charges, decisions = self.rails.meter(job, now, utilization=utilization, restarts=restarts)
            for d in decisions:
                (log.info if d.kind == "flag" else log.warning)("%s %s: %s", d.kind, d.reason, d.message)
            self.ledger.record(charges, meter=(job, now),
                               events=[(now, job, d.kind, d.reason, d.message) for d in decisions])
            return decisions

    def finish(self, job: str, outcome: str) -> None:
        with self._lock:
            now = self.clock()
            charges = self.rails.finish(job, now)
            if not self.ledger.close_meter(job, charges, events=[(now, job, "end", outcome, "")]):
                # Closed already (another meter on this ledger, or a retry after a crash that
                # committed the close): its charges are in the ledger once, not twice.
                log.info("cost meter for %r was already closed; nothing charged again", job)

    def running(self) -> list[str]:
        with self._lock:
            return self.rails.running()

    def spent(self, scope: str, since_s: float = 0.0) -> tuple[float, float]:
        """USD and GPU-hours of ``scope`` ("job:<name>" or "queue:<name>") in the book."""
        with self._lock:
            return self.rails.book.spent(scope, since_s)

    def ledger_total_usd(self) -> float:
        return self.ledger.total_usd()
