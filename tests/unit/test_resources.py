import pickle

import pytest

import ainative as ai
from ainative import errors
from ainative.resources import ACCELERATOR_SHARE, normalize_accelerator_type


@pytest.mark.parametrize("name,expected", [
    ("h100", "H100"), ("NVIDIA-H100", "H100"), ("NVIDIA H100 80GB HBM3", "H100"),
    ("nvidia-a100-sxm4-80gb", "A100"), ("Tesla-T4", "T4"), ("l4", "L4"), ("L40S", "L40S"),
    ("a10g", "A10G"), ("my-asic", "MY-ASIC"),
])
def test_accelerator_type_is_normalised(name, expected):
    assert normalize_accelerator_type(name) == expected
    assert ai.Accelerator(name).type == expected


@pytest.mark.parametrize("count", [0, -1, 1.5, 2.25, float("nan"), "2", True])
def test_bad_accelerator_counts_are_config_errors(count):
    with pytest.raises(errors.ConfigError, match="Accelerator.count"):
        ai.Accelerator("H100", count=count)


def test_fractional_and_whole_counts():
    assert ai.Accelerator("L4", count=0.5).fractional
    assert ai.Accelerator("H100", count=8.0).count == 8
    assert isinstance(ai.Accelerator("H100", count=8.0).count, int)


def test_resources_map_to_ray_options_and_bundles():
    r = ai.Resources(cpus=2, memory_bytes=2**30, accelerator=ai.Accelerator("h100", count=2),
                     custom={"ssd": 1})
    assert r.to_bundle() == {"CPU": 2.0, "GPU": 2.0, "accelerator_type:H100": ACCELERATOR_SHARE,
                             "memory": float(2**30), "ssd": 1.0}
    opts = r.to_ray_options()
    assert opts["num_cpus"] == 2 and opts["num_gpus"] == 2 and opts["memory"] == 2**30
    assert opts["resources"] == {"ssd": 1, "accelerator_type:H100": ACCELERATOR_SHARE}


def test_cpu_only_resources_have_no_gpu():
    r = ai.Resources()
    assert r.to_bundle() == {"CPU": 1.0}
    assert r.to_ray_options() == {"num_cpus": 1, "num_gpus": 0}


@pytest.mark.parametrize("kwargs,field", [
    ({"cpus": -1}, "cpus"), ({"memory_bytes": 0}, "memory_bytes"), ({"memory_bytes": 1.5}, "memory_bytes"),
    ({"accelerator": "H100"}, "accelerator"), ({"custom": {"GPU": 1}}, "custom"),
    ({"custom": {"x": 0}}, "custom"), ({"cpus": 0}, "cpus"),
])
def test_bad_resources_name_the_field(kwargs, field):
    with pytest.raises(errors.ConfigError) as info:
        ai.Resources(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


def test_resources_pickle_round_trip():
    r = ai.Resources(cpus=0.5, accelerator=ai.Accelerator("L4", count=0.5))
    assert pickle.loads(pickle.dumps(r)) == r
