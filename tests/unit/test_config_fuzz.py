"""Constructor fuzz over every public config: NaN, infinities, huge and negative values and wrong
types are ConfigError (naming the field), never another exception and never silently accepted."""

from __future__ import annotations

import math
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ainative as ai
from ainative import errors, spec


def _train(config: Any) -> None:
    return None


def _model() -> Any:
    return lambda x: x


# Every public config (found through ainative.__all__) with the smallest valid arguments.
BASE: dict[str, dict[str, Any]] = {
    "Accelerator": {"type": "H100"},
    "AutoscalingConfig": {},
    "BatchingConfig": {},
    "Budget": {"usd": 10},
    "CheckpointConfig": {},
    "Endpoint": {"model": _model, "name": "e"},
    "FailureConfig": {},
    "IdlePolicy": {},
    "KubeRayClusterConfig": {"name": "c"},
    "NodeGroupConfig": {},
    "PolicyConfig": {},
    "PriceTable": {},
    "Queue": {"name": "q", "cohort": "c"},
    "Resources": {},
    "TokenAuth": {"secret_env": "ENDPOINT_TOKEN"},
    "TrainJob": {"train_fn": _train},
}
# Public names that are not configs: errors, handles, results, modules and functions.
NOT_CONFIGS = {"AinativeError", "ConfigError", "InfeasibleError", "PlacementTimeoutError",
               "Cluster", "EndpointHandle", "TrainResult"}


# Configs public through a submodule: ai.data.ShuffleConfig, ai.cost.GuardrailConfig.
SUBMODULE_CONFIGS = {"ShuffleConfig": "data", "GuardrailConfig": "cost"}


def _cls(name: str) -> Any:
    module = SUBMODULE_CONFIGS.get(name)
    return getattr(getattr(ai, module) if module else ai, name)


CONFIGS = [*sorted(BASE), *SUBMODULE_CONFIGS]
BASE.update({name: {} for name in SUBMODULE_CONFIGS})

NAN, INF = float("nan"), float("inf")
NON_FINITE = [NAN, INF, -INF]
HUGE = [1e20, 10**20, -1e20, -(10**20), 10**400]  # 10**400: too large for a float
WRONG_TYPES: list[Any] = ["abc", "", [], {}, (1, 2, 3), object(), b"\xff", {"H100": NAN}, {1: 2},
                          {"h100": 1, "nvidia-h100": 2}, None, True]


def _is_numeric(annotation: Any) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return any(a in (int, float) for a in args)


def _fields(name: str) -> list[tuple[str, Any]]:
    return [(f, a) for f, a in spec._params(_cls(name)) if f not in ("train_fn", "model")]


NUMERIC = [(name, field) for name in CONFIGS for field, ann in _fields(name) if _is_numeric(ann)]
ALL_FIELDS = [(name, field) for name in CONFIGS for field, _ in _fields(name)]


def _build(config_name: str, /, **changes: Any) -> Any:
    return _cls(config_name)(**{**BASE[config_name], **changes})


def test_every_public_config_is_fuzzed():
    public = {n for n in ai.__all__ if n[:1].isupper()} - NOT_CONFIGS
    assert public <= set(BASE), f"add {sorted(public - set(BASE))} to BASE"
    for name in CONFIGS:
        _build(name)  # the base arguments are valid
    assert len(NUMERIC) >= 40  # the numeric fields were found through the annotations


@pytest.mark.parametrize("name,field", NUMERIC, ids=[f"{n}.{f}" for n, f in NUMERIC])
@pytest.mark.parametrize("value", NON_FINITE + HUGE, ids=["nan", "inf", "-inf", "1e20", "10**20",
                                                         "-1e20", "-10**20", "10**400"])
def test_numeric_fields_reject_non_finite_and_nonsense_values(name, field, value):
    with pytest.raises(errors.ConfigError) as info:
        _build(name, **{field: value})
    assert info.value.details.get("field") is not None, str(info.value)


@pytest.mark.parametrize("name,field", ALL_FIELDS, ids=[f"{n}.{f}" for n, f in ALL_FIELDS])
def test_wrong_types_are_config_errors_or_accepted(name, field):
    for value in WRONG_TYPES:
        try:
            _build(name, **{field: value})
        except errors.ConfigError:
            pass


@pytest.mark.parametrize("call,words", [
    (lambda: ai.TrainJob(_train, budget="lots"), "budget"),
    (lambda: ai.TrainJob(_train, workers=10**9), "workers"),
    (lambda: ai.TrainJob(_train, max_runtime_s=NAN), "max_runtime_s"),
    (lambda: ai.PriceTable(use_defaults="no"), "use_defaults"),
    (lambda: ai.PriceTable({"h100": 4, "NVIDIA-H100": 5}), "same accelerator type"),
    (lambda: ai.Resources(custom="abc"), "custom"),
    (lambda: ai.Resources(cpus=INF), "cpus"),
    (lambda: ai.Resources(custom={"ssd": NAN}), "custom"),
    (lambda: ai.KubeRayClusterConfig(name="c", worker_groups=None), "worker_groups"),
    (lambda: ai.NodeGroupConfig(tolerations=5), "tolerations"),
    (lambda: ai.BatchingConfig(max_wait_ms=NAN), "max_wait_ms"),
    (lambda: ai.AutoscalingConfig(target_concurrency=NAN), "target_concurrency"),
    (lambda: ai.AutoscalingConfig(upscale_delay_s=INF), "upscale_delay_s"),
    (lambda: ai.Queue("q", weight=NAN), "weight"),
    (lambda: ai.Queue("q", quota={"H100": INF}), "quota"),
    (lambda: ai.Queue("q", quota={"h100": 1, "nvidia-h100": 2}), "same accelerator type"),
    (lambda: ai.Queue("q", budget={"usd": 5}), "budget"),
    (lambda: ai.IdlePolicy(window_s=INF), "window_s"),
    (lambda: ai.Budget(usd=INF), "usd"),
    (lambda: ai.FailureConfig(start_timeout_s=NAN), "start_timeout_s"),
    (lambda: ai.Accelerator("H100", count=10**6), "count"),
])
def test_reported_bad_values_are_config_errors(call, words):
    with pytest.raises(errors.ConfigError, match=words):
        call()


def test_upper_bounds_are_stated_in_the_error():
    with pytest.raises(errors.ConfigError, match="10,000"):
        ai.TrainJob(_train, workers=10_001)
    with pytest.raises(errors.ConfigError, match="<= 10000"):
        ai.Resources(cpus=20_000)


def test_accelerator_keys_have_one_normalisation():
    queue = ai.Queue("q", quota={"nvidia-h100": 4, "a100": 2})
    assert queue.quota == {"H100": 4.0, "A100": 2.0}
    assert queue.nominal(ai.Accelerator("NVIDIA H100 80GB HBM3").type) == 4.0
    prices = ai.PriceTable({"nvidia-h100": 3.0})
    assert prices.gpu_hour_usd == {"H100": 3.0} and prices.gpu_hour_price("h100") == 3.0


_ANY_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**30), max_value=10**30),
    st.text(max_size=8), st.booleans(), st.none(), st.just([]), st.just({}),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), st.floats(), max_size=3),
    st.lists(st.integers(), max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(CONFIGS), data=st.data())
def test_random_arguments_raise_only_config_error(name, data):
    fields = [f for f, _ in _fields(name)]
    changes = data.draw(st.dictionaries(st.sampled_from(fields), _ANY_VALUE, max_size=4))
    try:
        obj = _build(name, **changes)
    except errors.ConfigError:
        return
    for field, value in changes.items():  # what was accepted holds no NaN or infinity
        if isinstance(value, float) and _is_numeric(dict(_fields(name))[field]):
            assert math.isfinite(value), f"{name}.{field}={value!r} accepted: {obj!r}"
