"""Guardrails for the live scheduler, backed by the SQLite ledger::

    ai.scheduling.configure(queues, prices=prices,
                            guardrails=ai.cost.scheduler_guardrails(queues, prices, ledger_path=...))

The hook travels to the scheduler actor by pickle (without its database connection) and opens the
ledger there on first use: the spend book is seeded from every row, and running jobs it has not
seen resume metering at the end of their last charge, so a restarted scheduler actor neither loses
nor double-counts spend. Every charge and decision is written to the ledger.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ainative.cost import ledger as ledger_mod
from ainative.policy.cost import guardrails as g
from ainative.policy import pricing
from ainative.policy.admission import Job
from ainative.policy.cost.hook import GuardrailsHook


LIVE_LOOKAHEAD_S = 1.0
# Until a teardown has been seen, assume a stopped job holds its resources this long after its
# grace (actors killed, placement group removed, lease released; 1-2 s on a loaded node). Without
# it the first budget stop of a scheduler's life overran the budget by its teardown (team C,
# +0.7%, in the mixed-day benchmark of 2026-12-02).
LIVE_TEARDOWN_PRIOR_S = 3.0
"""The live scheduler's metering period: its decision pass runs about once a second."""


class LedgerGuardrails(GuardrailsHook):
    def __init__(self, rails: g.Guardrails, ledger_path: str) -> None:
        super().__init__(rails)
        self.ledger_path = ledger_path
        self._ledger: ledger_mod.Ledger | None = None
        self._last_end: dict[str, float] = {}
        self._written = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ledger"] = None        # reopened (and the book reseeded) where it is unpickled
        return state

    def _open(self) -> ledger_mod.Ledger:
        if self._ledger is None:
            self._ledger = ledger_mod.Ledger(self.ledger_path)
            charges = self._ledger.charges()
            self.rails.book = g.SpendBook(charges)
            self._last_end = {}
            for c in charges:
                self._last_end[c.job] = max(self._last_end.get(c.job, c.end_s), c.end_s)
        return self._ledger

    def check_admit(self, job: Job, now: float) -> str | None:
        self._open()
        why = super().check_admit(job, now)
        self._flush_events()
        return why

    def on_tick(self, running: Sequence[Job], now: float) -> list[tuple[str, Any]]:
        self._open()
        stops = super().on_tick(running, now)
        self._flush_events()
        return stops

    def on_finish(self, job: Job, now: float, outcome: str) -> None:
        self._open()
        super().on_finish(job, now, outcome)

    def _emit(self, charges: list[g.Charge]) -> None:
        if charges:
            self._open().record(charges)

    def _resume_point(self, job: Job) -> float | None:
        last = self._last_end.get(job.job_id)
        return last if last is not None and job.start_s is not None and last > job.start_s else None

    def _flush_events(self) -> None:
        new = self.events[self._written:]
        if new:
            self._open().record((), events=[(t, job, d.kind, d.reason, d.message) for t, job, d in new])
            self._written = len(self.events)


def scheduler_guardrails(queues: Sequence[Any], prices: pricing.PriceTable | None = None, *,
                         ledger_path: str | os.PathLike[str] | None = None,
                         queue_budgets: Mapping[str, pricing.Budget] | None = None,
                         queue_max_runtime_s: Mapping[str, float] | None = None,
                         config: g.GuardrailConfig | None = None) -> LedgerGuardrails:
    """The guardrails object for ``ai.scheduling.configure(..., guardrails=...)``. Budgets come
    from ``Queue(budget=...)`` (plus ``queue_budgets``); bad input raises here, before anything
    runs: a budget for an unknown queue, a non-Budget, an unwritable ledger path."""
    if config is None:        # live: stop a metering period ahead of a cap (the pass runs ~1/s)
        config = g.GuardrailConfig(lookahead_s=LIVE_LOOKAHEAD_S,  # type: ignore[call-arg]
                                   teardown_prior_s=LIVE_TEARDOWN_PRIOR_S)
    base = GuardrailsHook.from_queues(queues, prices, queue_budgets=queue_budgets,
                                      queue_max_runtime_s=queue_max_runtime_s, config=config)
    path = str(ledger_mod.Ledger(ledger_path).path)     # opens it: ConfigError if not writable
    return LedgerGuardrails(base.rails, path)
