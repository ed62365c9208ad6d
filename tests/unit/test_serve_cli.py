"""`ainative serve`: flags -> Endpoint, validated before any Ray is started."""

from __future__ import annotations

import pytest

import ainative as ai
from ainative.cli import main as cli_main
from ainative.cli import serve as cli_serve


def echo_model():
    return lambda batch: batch


def parse(*argv):
    return cli_main.build_parser().parse_args(["serve", *argv])


def test_flags_become_an_endpoint():
    args = parse("--model", f"{__name__}:echo_model", "--route", "/echo", "--gpu", "L4:0.5",
                 "--cpus", "0.5", "--batch", "8", "--wait-ms", "2", "--max-replicas", "3",
                 "--slo-ms", "80")
    ep = cli_serve.build_endpoint(args)
    assert ep.name == "echo-model" and ep.route == "/echo"
    assert ep.resources.accelerator == ai.Accelerator("L4", count=0.5)
    assert ep.batching == ai.BatchingConfig(max_batch_size=8, max_wait_ms=2)
    assert ep.autoscaling.max_replicas == 3 and ep.autoscaling.latency_slo_ms == 80
    assert ep.fast_path is False and ep.autoscaling.shed_over_slo is False


def test_unset_flags_leave_the_constructors_defaults():
    ep = cli_serve.build_endpoint(parse("--model", f"{__name__}:echo_model"))
    assert ep.autoscaling == ai.AutoscalingConfig() and ep.resources == ai.Resources()
    assert ep.batching is None and ep.fast_path is False
    batched = cli_serve.build_endpoint(parse("--model", f"{__name__}:echo_model", "--batch", "4"))
    assert batched.batching == ai.BatchingConfig(max_batch_size=4)


def test_fast_path_and_shedding_flags():
    ep = cli_serve.build_endpoint(parse("--model", f"{__name__}:echo_model", "--fast-path",
                                        "--slo-ms", "50", "--shed-over-slo"))
    assert ep.fast_path is True
    assert ep.autoscaling.shed_over_slo is True and ep.autoscaling.latency_slo_ms == 50


@pytest.mark.parametrize("argv, message", [
    (["--model", "no-colon"], "must look like 'module:function'"),
    (["--model", "ainative.nothing_here:f"], "cannot be imported"),
    (["--model", f"{__name__}:echo_model", "--batch", "0"], "max_batch_size"),
    (["--model", f"{__name__}:echo_model", "--slo-ms", "0"], "latency_slo_ms"),
    (["--model", f"{__name__}:echo_model", "--gpu", "L4:half"], "--gpu"),
    (["--model", f"{__name__}:echo_model", "--shed-over-slo"], "shed_over_slo"),
])
def test_bad_flags_exit_2_with_the_field(argv, message, capsys):
    assert cli_main.main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err
