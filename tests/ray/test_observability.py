"""Observability end to end: a queued TrainJob whose worker dies leaves a structured event log
with the failure, its reason and the recovery (what `ainative logs JOB` prints), and training,
scheduling and cost metrics appear on Ray's Prometheus endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import ainative as ai
from ainative import events, observability


def crash_once_fn(config):
    ctx = ai.train.get_context()
    for step in range(1, config["steps"] + 1):
        if ctx.rank == 1 and step == config["crash_at"] and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.02)
        ai.train.report({"step": step})


def _scrape(names: tuple[str, ...], timeout_s: float = 40.0, labels: dict[str, str] | None = None
            ) -> dict[str, str]:
    """Poll every node's metrics endpoint until each name shows up (Ray exports every few s);
    ``labels[name]``, where given, must be in the series' line too (the shared cluster may hold
    the same metric for other modules' jobs)."""
    labels = labels or {}
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline and len(found) < len(names):
        for url in observability.metrics_urls():
            assert url.startswith("http://127.0.0.1:"), url  # the local node is scraped on loopback
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            for name in names:
                line = next((ln for ln in body.splitlines()
                             if ln.startswith(name) and labels.get(name, "") in ln), None)
                if line:
                    found[name] = line
        time.sleep(1.0)
    return found


def test_recovery_is_in_the_event_log_and_metrics_are_exported(ray_local, tmp_path, monkeypatch, no_leaks):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "events"))
    ai.scheduling.configure([ai.Queue("obs", quota={"H100": 4})], prices=ai.PriceTable({"H100": 4.0}),
                            guardrails=ai.cost.scheduler_guardrails([ai.Queue("obs", quota={"H100": 4})],
                                                                    ai.PriceTable({"H100": 4.0}),
                                                                    ledger_path=tmp_path / "ledger.sqlite"),
                            fresh=True)
    try:
        job = ai.TrainJob(crash_once_fn, workers=2, name="obs-job", queue="obs",
                          resources=ai.Resources(cpus=1, accelerator=ai.Accelerator("H100")),
                          config={"steps": 30, "crash_at": 10, "marker": str(tmp_path / "crashed")},
                          checkpoint=ai.CheckpointConfig(path=str(tmp_path / "ckpt")),
                          failure=ai.FailureConfig(max_restarts=2))
        result = job.run()
    finally:
        ai.scheduling.shutdown()
    assert result.status == "succeeded" and result.restarts == 1

    log = events.read("obs-job")
    kinds = [e["event"] for e in log]
    assert "admitted" in kinds, kinds
    failure = next(e for e in log if e["event"] == "failure")
    assert failure["rank"] == 1 and failure["reason"] and failure["action"]
    after = kinds[kinds.index("failure"):]
    assert "running" in after and kinds[-1] == "finished", kinds

    # `ainative logs JOB` prints the same file, one line per event
    out = subprocess.run([sys.executable, "-m", "ainative.cli.main", "logs", "obs-job"], capture_output=True,
                         text=True, timeout=60, env={**os.environ})
    assert out.returncode == 0 and "failure" in out.stdout and "obs-job" in out.stdout

    names = ("ray_ainative_train_restarts_total", "ray_ainative_train_world_size",
             "ray_ainative_sched_admitted_total", "ray_ainative_sched_pending",
             "ray_ainative_cost_gpu_hours_total", "ray_ainative_cost_usd_total")
    found = _scrape(names, labels={"ray_ainative_train_restarts_total": 'job="obs-job"'})
    assert set(found) == set(names), found
    assert 'job="obs-job"' in found["ray_ainative_train_restarts_total"]
