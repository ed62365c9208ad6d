"""The SQLite ledger, the wall-clock meter over it (restart resumes), reports and the CLI (no Ray)."""

import csv
import io
import json
import os

import pytest

from ainative import errors
from ainative.cli import main as cli
from ainative.cost import ledger as ledger_mod
from ainative.cost import meter as meter_mod
from ainative.cost import reporting as report_mod
from ainative.policy.cost import guardrails as g
from ainative.policy.pricing import Budget, IdlePolicy, PriceTable

PRICES = PriceTable({"H100": 4.0, "L4": 0.7}, cpu_core_hour_usd=0.04)
T0 = 1_795_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def open_meter(path, clock, **kw):
    return meter_mod.Meter.open(str(path), prices=PRICES, clock=clock, **kw)


def spec(name, queue, gpus, **kw):
    return g.JobSpec(name=name, queue=queue, gpus=gpus, cpus=kw.pop("cpus", 2), **kw)


def test_meter_restart_resumes_from_the_ledger_and_loses_nothing(tmp_path):
    path, clock = tmp_path / "l.sqlite", Clock()
    meter = open_meter(path, clock, queue_budgets={"team-a": Budget(usd=100)})
    meter.start(spec("a", "team-a", {"H100": 2}, budget=Budget(usd=50), idle=IdlePolicy(window_s=60)))
    for _ in range(3):
        clock.t += 600
        meter.poll("a", utilization=0.9)
    before = meter.spent("job:a")
    assert before[0] == pytest.approx(0.5 * (8 + 0.08))
    del meter                                    # the process holding the meter dies here
    clock.t += 300                               # ... while the job keeps its GPUs
    revived = open_meter(path, clock, queue_budgets={"team-a": Budget(usd=100)})
    assert revived.running() == ["a"]
    assert revived.spent("job:a") == pytest.approx(before)       # nothing lost, nothing doubled
    revived.poll("a")                            # charges the gap since the last mark
    assert revived.spent("job:a")[0] == pytest.approx((1800 + 300) / 3600 * 8.08)
    revived.finish("a", "succeeded")
    assert revived.running() == []
    ledger = ledger_mod.Ledger(path)
    assert ledger.total_usd() == pytest.approx(revived.spent("job:a")[0])
    assert [e["kind"] for e in ledger.events("a")][-1] == "end"
    assert ledger.meters() == []


def test_restart_keeps_the_job_spec_and_budget_decisions(tmp_path):
    path, clock = tmp_path / "l.sqlite", Clock()
    meter = open_meter(path, clock)
    meter.start(spec("b", "q", {"H100": 1}, cpus=0, budget=Budget(usd=4, warn_at=0.5),
                     max_runtime_s=7200))
    clock.t += 1800
    assert [d.kind for d in meter.poll("b")] == ["warn"]
    revived = open_meter(path, clock)
    clock.t += 1800
    decisions = revived.poll("b")
    assert [(d.kind, d.reason) for d in decisions] == [("stop", "budget")]
    kinds = [(e["kind"], e["reason"]) for e in ledger_mod.Ledger(path).events("b")]
    assert kinds == [("warn", "budget"), ("stop", "budget")]


def test_admission_refusal_is_logged_as_event(tmp_path):
    meter = open_meter(tmp_path / "l.sqlite", Clock(), queue_budgets={"q": Budget(usd=1)})
    decision = meter.admit(spec("big", "q", {"H100": 8}, max_runtime_s=3600))
    assert decision.kind == "refuse" and "$1.00 left of $1.00" in decision.message
    assert ledger_mod.Ledger(tmp_path / "l.sqlite").events("big")[0]["kind"] == "refuse"


def _fill(path, clock):
    meter = open_meter(path, clock)
    jobs = [spec("a", "team-a", {"H100": 2}), spec("b", "team-a", {"L4": 1}),
            spec("c", "team-b", {"H100": 1}, cpus=1), spec("d", None, {}, cpus=4)]
    for job in jobs:
        meter.start(job)
    for step in range(1, 5):
        clock.t = T0 + 900 * step
        for job in jobs[: 4 - (step == 4)]:
            meter.poll(job.name)
        if step == 3:
            meter.finish("d", "failed")         # "d" ends after 45 min, the rest run an hour
    for job in jobs[:3]:
        meter.finish(job.name, "succeeded")
    return ledger_mod.Ledger(path)


def test_report_totals_equal_the_sum_of_ledger_rows(tmp_path):
    path = tmp_path / "l.sqlite"
    ledger = _fill(path, Clock())
    rows = ledger.charges()
    row_usd = sum(c.cost_usd for c in rows)
    row_hours = sum(c.gpu_hours for c in rows)
    for by in ("team", "queue", "job", "accelerator"):
        result = report_mod.report(by=by, path=path)
        assert result.total_usd == pytest.approx(row_usd, rel=1e-12), by
        assert result.total_gpu_hours == pytest.approx(row_hours, rel=1e-12), by
    by_acc = {r["key"]: r for r in report_mod.report(by="accelerator", path=path)}
    assert by_acc["H100"]["gpu_hours"] == pytest.approx(3.0)
    assert by_acc["H100"]["cost_usd"] == pytest.approx(12.0)
    assert by_acc["L4"]["cost_usd"] == pytest.approx(0.7)
    by_team = {r["key"]: r["cost_usd"] for r in report_mod.report(by="team", path=path)}
    assert by_team["(none)"] == pytest.approx(4 * 0.04 * 0.75)   # CPU-only job, 45 min
    assert list(by_team) == sorted(by_team, key=by_team.get, reverse=True)


def test_report_window_counts_straddling_rows_pro_rata(tmp_path):
    path = tmp_path / "l.sqlite"
    _fill(path, Clock())
    first_half = report_mod.report(by="job", path=path, since=T0, until=T0 + 1800)
    second_half = report_mod.report(by="job", path=path, since=T0 + 1800)
    whole = report_mod.report(by="job", path=path)
    assert first_half.total_usd + second_half.total_usd == pytest.approx(whole.total_usd)
    mid = report_mod.report(by="job", path=path, since=T0 + 450, until=T0 + 1350)  # half of 2 rows
    assert {r["key"]: r["cost_usd"] for r in mid}["a"] == pytest.approx(8.08 * 0.25)


def test_parse_time_forms_and_errors():
    assert report_mod.parse_time("2026-11-01") == 1793491200.0
    assert report_mod.parse_time("2026-11-01T01:00:00+01:00") == 1793491200.0
    assert report_mod.parse_time(12.5) == 12.5
    assert abs(report_mod.parse_time("1d") - (report_mod.parse_time("0h") - 86400)) < 5
    for bad in ("yesterday", "2026-13-01", True):
        with pytest.raises(errors.ConfigError, match="since"):
            report_mod.parse_time(bad)
    with pytest.raises(errors.ConfigError, match="by must be one of"):
        report_mod.report(by="color")


def test_unwritable_ledger_path_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.ConfigError, match="cannot be written") as info:
        ledger_mod.Ledger(blocker / "sub" / "l.sqlite")
    assert info.value.field == "ledger_path"


def test_default_path_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv(ledger_mod.LEDGER_ENV, str(tmp_path / "x.sqlite"))
    assert ledger_mod.default_path() == tmp_path / "x.sqlite"


def test_cli_report_table_csv_json(tmp_path, capsys):
    path = tmp_path / "l.sqlite"
    _fill(path, Clock())
    assert cli.main(["cost", "report", "--by", "team", "--ledger", str(path)]) == 0
    table = capsys.readouterr().out
    assert "team-a" in table and "total" in table
    assert cli.main(["cost", "report", "--by", "accelerator", "--ledger", str(path), "--csv",
                     "--since", "2026-11-01"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["accelerator"] for r in rows} == {"H100", "L4", "CPU"}
    assert cli.main(["cost", "report", "--by", "job", "--ledger", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_usd"] == pytest.approx(ledger_mod.Ledger(path).total_usd())
    assert cli.main(["cost", "report", "--since", "someday", "--ledger", str(path)]) == 2
    assert "since" in capsys.readouterr().err
    assert os.path.exists(path)
