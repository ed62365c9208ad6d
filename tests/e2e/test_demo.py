"""The README's first command, `make demo`, runs `ainative demo`: it exits 0 only when every check
it makes passed (two teams contend, a preempted job resumes by itself from its checkpoint with no
step lost, a budget warning fires, an endpoint burst scales up with nothing shed or failed); here
we also read its JSON summary and the event logs ourselves, count its lines, and check what it
leaves running: nothing by default, the cluster, endpoint and dashboard with ``--keep`` until
Ctrl-C. A trimmed size keeps CI fast (the same phases, fewer rows and requests)."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import waiting

# The demo's own deadlines (400 s to its summary, 240 s to exit after Ctrl-C) are for a busy
# machine; the suite's 300 s per-test timeout would cut them.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(700)]
MAX_LINES = 80     # the bound on `make demo` output


def demo_env(home):
    env = {**os.environ, "AINATIVE_HOME": str(home), "AINATIVE_DEMO_SCALE": "small"}
    env.pop("AINATIVE_EVENTS_DIR", None)
    env.pop("AINATIVE_LEDGER", None)
    return env


def session_processes(session_dir):
    """PIDs whose command line names this Ray session (raylet, GCS, workers)."""
    name = os.path.basename(session_dir.rstrip("/"))
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if name in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:   # gone meanwhile
            continue
    return pids


def wait_for(predicate, timeout_s, what):
    return waiting.until(what, predicate, timeout_s, interval_s=0.25)


def refused(url):
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


def test_demo_shows_the_control_plane_quietly_and_leaves_nothing_running(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ainative.cli.main", "demo"], capture_output=True,
                         text=True, timeout=400, env=demo_env(tmp_path))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for step in ("== 1. cluster, queues", "== 2. at once", "== 3. cost report", "== summary =="):
        assert step in text, f"missing {step!r} in:\n{text[-3000:]}"
    for who in ("data", "serve", "train", "queues", "budget"):      # the parallel threads' lines
        assert f"] {who} " in text, f"no line from {who!r} in:\n{text}"
    assert "everything released (nothing left running)" in text
    # quiet by default: no Serve access log or Ray INFO line, the summary is what one reads
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) < MAX_LINES, f"{len(lines)} lines of output (limit {MAX_LINES}):\n" + "\n".join(lines[:120])
    assert "UserWarning" not in out.stderr
    assert "FAIL" not in text

    summary = json.loads((tmp_path / "demo-summary.json").read_text())
    train = {k: v for k, v in summary.get("train", {}).items() if k != "steps_reported"}
    assert summary["ok"] is True and all(summary["checks"].values()), (summary["checks"], train)
    assert set(summary["checks"]) >= {"b-train preempted, requeued, resumed", "budget warning fired",
                                      "endpoint scaled up (replicas started > 1)", "no request shed or failed"}
    assert summary["dashboard"].startswith("http://127.0.0.1:") and summary["dashboard"] in text
    serve = summary["serve"]
    assert serve["peak_replicas"] > 1 and serve["shed"] == 0 and serve["failed"] == 0, serve
    assert serve["ok"] == serve["sent"] > 0
    train = summary["train"]
    assert train["status"] == "succeeded" and train["urgent_status"] == "succeeded"
    assert train["steps_reported"] == list(range(1, train["steps"] + 1))      # no step lost
    assert summary["budget"]["warnings"], summary["budget"]
    assert f"{len(summary['budget']['warnings'])} budget warning(s)" in text

    # the event logs, read here rather than trusted from the summary
    log = [json.loads(line) for line in (tmp_path / "events" / "b-train.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in log]
    assert kinds.index("preempted") < kinds.index("requeued") < kinds.index("resumed"), kinds
    preempted = next(e for e in log if e["event"] == "preempted")
    resumed = next(e for e in log if e["event"] == "resumed")
    assert preempted["step"] > 0 and resumed["step"] == preempted["step"] == train["resumed_from"]
    endpoint = [json.loads(line) for line in (tmp_path / "events" / "demo-regressor.jsonl").read_text().splitlines()]
    assert any(e["event"] == "admitted" and e["queue"] == "team-a" for e in endpoint), endpoint   # leased GPUs

    # nothing left running: the dashboard's port is closed, no process of its Ray session remains
    assert refused(summary["dashboard"] + "/api/v1/cluster")
    assert summary["ray_session_dir"], summary
    wait_for(lambda: not session_processes(summary["ray_session_dir"]), 30,
             "the demo's Ray processes to exit")


def test_demo_keep_leaves_cluster_endpoint_and_dashboard_up_until_ctrl_c(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "ainative.cli.main", "demo", "--keep"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**demo_env(tmp_path), "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    seen = []
    try:
        deadline = time.monotonic() + 400
        while not any("Ctrl-C to stop" in line for line in seen):
            assert proc.poll() is None, "".join(seen)[-3000:]
            assert time.monotonic() < deadline, "".join(seen)[-3000:]
            try:
                seen.append(lines.get(timeout=1.0))
            except queue.Empty:
                continue
        summary = json.loads((tmp_path / "demo-summary.json").read_text())
        train = {k: v for k, v in summary.get("train", {}).items() if k != "steps_reported"}
        assert summary["ok"] is True, (summary["checks"], train)
        url = summary["dashboard"]
        with pytest.raises(subprocess.TimeoutExpired):  # still up after the summary
            proc.wait(timeout=0.5)
        assert requests.get(f"{url}/api/v1/cluster", timeout=10).json()["available"] is True
        queues = requests.get(f"{url}/api/v1/queues", timeout=10).json()
        assert {q["name"] for q in queues["queues"]} >= {"team-a", "team-b"}
        endpoints = requests.get(f"{url}/api/v1/endpoints", timeout=10).json()["endpoints"]
        assert [e["name"] for e in endpoints] == ["demo-regressor"]
        assert session_processes(summary["ray_session_dir"])
        proc.send_signal(signal.SIGINT)                # Ctrl-C
        assert proc.wait(timeout=240) == 0             # a busy machine took over 120 s to release
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    reader.join(timeout=30)      # it ends at the end of the exited process's output
    while not lines.empty():
        seen.append(lines.get())
    assert "everything released" in "".join(seen), "".join(seen)[-2000:]
    assert refused(f"{url}/api/v1/cluster")
    wait_for(lambda: not session_processes(summary["ray_session_dir"]), 30,
             "the demo's Ray processes to exit after Ctrl-C")
