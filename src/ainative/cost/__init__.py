"""Cost guardrails at run time: the SQLite spend ledger, the meter, utilisation probes and reports.

::

    import ainative as ai
    guard = ai.cost.enable(prices=ai.PriceTable({"H100": 4.0}), ledger_path="/data/ledger.sqlite")
    ...  # every job admitted through ainative.scheduling.protocol is now metered and guarded
    ai.cost.report(by="team", since="2026-11-01").table()

``enable`` installs the "cost" layer of the admission chain (``scheduling.protocol``), which wraps
whatever is below it (immediate admission, or the scheduler's layer, installed before or after),
so that per-job guardrails (budget, max_runtime_s, idle reclaim, crash loop, overrun) hold for any
job. Queue budgets inside the scheduler go through ``ainative.policy.cost.hook`` instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ainative import errors
from ainative.cost.ledger import LEDGER_ENV, Ledger, default_path
from ainative.cost.meter import Meter
from ainative.cost.probes import ManualProbe, NvmlProbe, UtilizationProbe, default_probe
from ainative.cost.reporting import CostReport, parse_time, report
from ainative.cost.scheduler import LedgerGuardrails, scheduler_guardrails
from ainative.policy.cost import guardrails as g
from ainative.policy import pricing

__all__ = ["LEDGER_ENV", "CostGuard", "CostReport", "GuardrailConfig", "Ledger", "LedgerGuardrails",
           "ManualProbe", "Meter", "NvmlProbe", "UtilizationProbe", "budget_error", "default_path",
           "default_probe", "disable", "enable", "parse_time", "report", "scheduler_guardrails"]

GuardrailConfig = g.GuardrailConfig
LAYER = "cost"
"""The cost guard's name in the admission chain (``ainative.scheduling.protocol.layers()``)."""
_ACTIVE: CostGuard | None = None


@dataclasses.dataclass(slots=True)
class CostGuard:
    """What ``enable`` installed; ``meter`` is a ``Meter`` or the head-node actor's proxy."""

    meter: Any
    ledger_path: str
    in_actor: bool

    def disable(self) -> None:
        disable()

    def shutdown(self) -> None:
        """``disable`` and stop the meter actor (its state stays in the ledger)."""
        disable()
        if self.in_actor:
            self.meter.kill()


def _check(queue_budgets: Mapping[str, Any] | None, prices: Any) -> None:
    if prices is not None and not isinstance(prices, pricing.PriceTable):
        raise errors.ConfigError(f"prices must be an ainative.PriceTable, got {prices!r}",
                                 field="prices", value=prices)
    for queue, budget in (queue_budgets or {}).items():
        if not isinstance(budget, pricing.Budget):
            raise errors.ConfigError(f"queue_budgets[{queue!r}] must be an ainative.Budget, got "
                                     f"{budget!r}", field="queue_budgets", value=budget)


def enable(*, prices: pricing.PriceTable | None = None,
           queue_budgets: Mapping[str, pricing.Budget] | None = None,
           queue_max_runtime_s: Mapping[str, float] | None = None,
           config: g.GuardrailConfig | None = None, ledger_path: str | os.PathLike[str] | None = None,
           probe: UtilizationProbe | str | None = "auto", idle: pricing.IdlePolicy | None = None,
           in_actor: bool = True) -> CostGuard:
    """Meter and guard every job admitted from now on. ``in_actor`` runs the meter as the named,
    detached actor on the head node (needs Ray connected); False meters in this process.
    ``probe="auto"`` reads NVML where a GPU exists; ``idle`` applies to jobs that bring no
    IdlePolicy of their own. Bad input raises before anything starts."""
    global _ACTIVE
    from ainative.scheduling import protocol

    _check(queue_budgets, prices)
    if idle is not None and not isinstance(idle, pricing.IdlePolicy):
        raise errors.ConfigError(f"idle must be an ainative.IdlePolicy, got {idle!r}", field="idle",
                                 value=idle)
    path = str(pathlib_path(ledger_path))
    Ledger(path).close()  # writable? (ConfigError naming the path otherwise)
    if _ACTIVE is not None:
        disable()
    kwargs: dict[str, Any] = {"prices": prices, "queue_budgets": dict(queue_budgets or {}),
                              "queue_max_runtime_s": dict(queue_max_runtime_s or {}), "config": config}
    if in_actor:
        from ainative.cost import _actor

        meter: Any = _actor.RemoteMeter(_actor.start(path, kwargs), _actor.actor_name(path))
    else:
        meter = Meter.open(path, **kwargs)
    from ainative.cost import _admission

    live_probe = default_probe() if probe == "auto" else probe
    grace = (config or g.GuardrailConfig()).stop_grace_s

    def wrap(inner: protocol.Admission, queue: str | None) -> protocol.Admission:
        return _admission.GuardedAdmission(meter, inner, probe=live_probe, grace_s=grace, idle=idle)

    protocol.install(protocol.Layer(LAYER, protocol.COST_RANK, wrap))
    _ACTIVE = CostGuard(meter=meter, ledger_path=path, in_actor=in_actor)
    return _ACTIVE


def disable() -> None:
    """Remove the cost guard's layer from the admission chain; the other layers (the scheduler's)
    stay (the meter actor keeps running so that other drivers' jobs stay metered)."""
    global _ACTIVE
    from ainative.scheduling import protocol

    if _ACTIVE is not None:
        protocol.uninstall(LAYER)
        _ACTIVE = None


def pathlib_path(path: str | os.PathLike[str] | None) -> os.PathLike[str]:
    import pathlib

    return pathlib.Path(path).expanduser() if path is not None else default_path()


def budget_error(stop: Any, job: str = "") -> errors.BudgetExceededError:
    """The error a job controller raises/reports when it stopped for ``reason == "budget"``."""
    return errors.BudgetExceededError(getattr(stop, "message", "") or f"budget exhausted for job {job!r}",
                                      job=job, reason=getattr(stop, "reason", "budget"))
