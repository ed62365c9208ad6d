"""`ainative simulate` end to end through the CLI entry point."""

from __future__ import annotations

import json

from ainative.cli import main
from ainative.sim.report import KEYS

CLUSTER = "examples/sim/small_cluster.yaml"


def test_simulate_json_has_every_key(capsys):
    assert main.main(["simulate", "examples/sim/small_trace.csv", "--cluster", CLUSTER,
                      "--policy", "kueue", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(KEYS) <= set(out) and out["policy"] == "kueue" and set(out["teams"]) == {"team-a", "team-b"}


def test_generate_then_simulate_all(tmp_path, capsys):
    path = tmp_path / "g.csv"
    assert main.main(["simulate", str(path), "--generate", "200", "--gpus", "32", "--teams", "2"]) == 0
    assert "wrote 200 jobs" in capsys.readouterr().out
    assert main.main(["simulate", str(path), "--cluster", CLUSTER, "--policy", "all"]) == 0
    text = capsys.readouterr().out
    assert "policy: ainative" in text and "policy: fifo" in text and "avg_jct_s" in text


def test_bad_trace_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "b.csv"
    bad.write_text("job_id,submit_time_s,duration_s,num_gpus\nj1,0,10,-1\n")
    assert main.main(["simulate", str(bad), "--cluster", CLUSTER]) == 2
    assert "line 2: num_gpus" in capsys.readouterr().err


def test_queue_parser_registered(capsys):
    parser = main.build_parser()
    args = parser.parse_args(["queue", "why", "job-1", "--json"])
    assert args.job == "job-1" and args.json


def test_production_shape_and_placement(tmp_path, capsys):
    path, cluster = tmp_path / "p.csv", tmp_path / "c.yaml"
    assert main.main(["simulate", str(path), "--generate", "300", "--gpus", "64", "--shape", "production",
                      "--cluster-out", str(cluster)]) == 0
    assert "wrote 300 jobs" in capsys.readouterr().out and cluster.exists()
    assert main.main(["simulate", str(path), "--cluster", str(cluster), "--policy", "ainative",
                      "--placement", "fgd", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["placement"] == "fgd" and out["completed_jobs"] + out["unscheduled_jobs"] == 300
