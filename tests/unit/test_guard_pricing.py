"""PriceTable, Budget, IdlePolicy: validation and arithmetic (no Ray)."""

import pickle

import pytest

from ainative import errors
from ainative.policy import pricing
from ainative.resources import Accelerator, Resources


def test_price_table_normalises_types_and_falls_back_to_defaults():
    table = pricing.PriceTable({"nvidia-h100": 4.0, "L4": 0.7})
    assert table.gpu_hour_price("H100") == 4.0
    assert table.gpu_hour_price("NVIDIA A100 80GB") == pricing.DEFAULT_GPU_HOUR_USD["A100"]
    # 2 x H100 and 4 CPU cores for one hour
    assert table.cost_usd({"H100": 2}, 4, 3600) == pytest.approx(8.0 + 4 * 0.04)


def test_unknown_type_needs_a_price():
    table = pricing.PriceTable({"H100": 4.0}, use_defaults=False)
    with pytest.raises(errors.ConfigError, match="no price for accelerator type 'A100'"):
        table.gpu_hour_price("A100")
    assert pricing.PriceTable(unknown_gpu_hour_usd=2.5).gpu_hour_price("MYCHIP") == 2.5


@pytest.mark.parametrize("kwargs,field", [
    ({"gpu_hour_usd": {"H100": -1}}, "gpu_hour_usd['H100']"),
    ({"cpu_core_hour_usd": -0.1}, "cpu_core_hour_usd"),
    ({"currency": "EUR"}, "currency"),
    ({"gpu_hour_usd": {"H100": float("nan")}}, "gpu_hour_usd"),
])
def test_bad_prices_are_config_errors(kwargs, field):
    with pytest.raises(errors.ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        pricing.PriceTable(**kwargs)


def test_price_table_from_yaml_dict_rejects_unknown_fields():
    table = pricing.PriceTable.from_dict({"gpu_hour_usd": {"H100": 3.0}, "cpu_core_hour_usd": 0.05})
    assert table.gpu_hour_price("H100") == 3.0
    with pytest.raises(errors.ConfigError, match="eur_per_hour"):
        pricing.PriceTable.from_dict({"eur_per_hour": 3})


@pytest.mark.parametrize("kwargs,field", [
    ({"usd": -5}, "usd"), ({"gpu_hours": -1}, "gpu_hours"), ({}, "usd"),
    ({"usd": 5, "warn_at": 0}, "warn_at"), ({"usd": 5, "warn_at": 1.2}, "warn_at"),
    ({"usd": 5, "period": "year"}, "period"), ({"usd": 5, "action": "explode"}, "action"),
    ({"eur": 5}, "eur"), ({"usd": 5, "currency": "EUR"}, "currency"),
])
def test_bad_budgets_are_config_errors(kwargs, field):
    with pytest.raises(errors.ConfigError) as info:
        pricing.Budget(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


def test_budget_positional_and_yaml_unknown_keys():
    with pytest.raises(errors.ConfigError, match="keyword arguments only"):
        pricing.Budget(100)  # type: ignore[misc]
    with pytest.raises(errors.ConfigError, match="'eur'"):
        pricing.Budget.from_dict({"eur": 100})
    assert pricing.Budget.from_dict({"usd": 100, "period": "month"}).usd == 100


def test_budget_period_start_is_calendar_utc():
    friday = 1795780800.0  # 2026-11-27 10:40:00 UTC, a Friday
    assert pricing.Budget(usd=1).period_start(friday) == 0.0
    assert pricing.Budget(usd=1, period="day").period_start(friday) == 1795737600.0   # 11-27 00:00
    assert pricing.Budget(usd=1, period="week").period_start(friday) == 1795392000.0  # 11-23 Mon
    assert pricing.Budget(usd=1, period="month").period_start(friday) == 1793491200.0  # 11-01


def test_idle_policy_validation_and_warn_default():
    assert pricing.IdlePolicy(window_s=600).warn_s == 300
    assert pricing.IdlePolicy(scale_to_zero_after_s=900).scale_to_zero_after_s == 900
    for kwargs in ({"threshold": 1.5}, {"window_s": 0}, {"window_s": 60, "warn_after_s": 120},
                   {"action": "nuke"}, {"scale_to_zero_after_s": -1}, {"idle_after": 3}):
        with pytest.raises(errors.ConfigError):
            pricing.IdlePolicy(**kwargs)


def test_configs_pickle_and_allocation_of():
    budget = pricing.Budget(usd=200, gpu_hours=10)
    assert pickle.loads(pickle.dumps(budget)) == budget
    table = pricing.PriceTable({"H100": 4})
    assert pickle.loads(pickle.dumps(table)) == table
    gpus, cpus = pricing.allocation_of([Resources(cpus=2, accelerator=Accelerator("H100", count=1))] * 2
                                       + [Resources(cpus=1)])
    assert gpus == {"H100": 2.0} and cpus == 5.0
