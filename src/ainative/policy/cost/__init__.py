"""Cost decisions, pure Python, in one place: what the live scheduler, ``ai.cost.enable``'s guard and
the simulators all decide with, given explicit timestamps (no clock, no Ray, no database)::

    records.py     JobSpec (a job's priced shape), Charge (metered spend), SpendBook (spend per
                   scope and period, seeded from the ledger after a restart)
    guardrails.py  Guardrails: budget admission and whole-budget refusal, warn/stop at spend caps,
                   max runtime, idle reclaim, crash loops, overruns -> Decision
    hook.py        GuardrailsHook: those guardrails as the scheduler engine's hook
                   (``policy.admission.Guardrails``: check_submit / check_admit / on_tick / on_finish)

Prices, budgets and idle policies themselves (``PriceTable``, ``Budget``, ``IdlePolicy``) are in
``policy.pricing``. The runtime parts (the SQLite ledger, the meter and its actor, utilisation
probes, reports, the admission layer) are in ``ainative.cost``.
"""
