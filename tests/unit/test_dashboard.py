"""The dashboard without Ray: the API's schema (generated, shipped, and matched by every API
function's output), empty states with their fix, the numbers the API derives, the refusal of a
non-loopback bind without a token, and the token check of the live server."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest
import requests

from ainative import errors, events
from ainative.cli import main as cli
from ainative.cost import ledger as ledger_mod
from ainative.dashboard import api, schema, server
from ainative.policy.cost.records import Charge


def valid(name: str, body: dict) -> dict:
    jsonschema.validate(json.loads(json.dumps(body)), schema.resource_schema(name))
    return body


def test_shipped_api_schema_is_generated_from_the_code():
    shipped = json.loads(schema.schema_file().read_text())
    assert shipped == json.loads(json.dumps(schema.json_schema(), sort_keys=True)), (
        "src/ainative/dashboard/api.schema.json is stale: run `python -c 'from ainative.dashboard "
        "import schema; schema.write_schema()'`")
    jsonschema.Draft202012Validator.check_schema(shipped)


def test_schema_rejects_a_wrong_shape():
    with pytest.raises(jsonschema.ValidationError):
        valid("queues", {"available": True, "fix": None, "queues": [{"name": "a"}]})


@pytest.fixture
def no_ray(monkeypatch):
    """As in a process that never connected: in one pytest session the Ray tests that ran before
    may have left this process connected, so the API's probe is made to say "not connected"."""
    monkeypatch.setattr(api, "_ray_ready", lambda: False)


def test_without_ray_every_resource_is_an_empty_state_with_its_fix(no_ray):
    for name, fn in (("cluster", api.cluster), ("queues", api.queues), ("endpoints", api.endpoints)):
        body = valid(name, fn())
        assert body["available"] is False and "ainative dashboard --address" in body["fix"]


def test_jobs_summarise_the_event_log(tmp_path, monkeypatch):
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "none"))
    assert valid("jobs", api.jobs())["available"] is False
    monkeypatch.setenv("AINATIVE_EVENTS_DIR", str(tmp_path / "ev"))
    for event, fields in (("submitted", {}), ("admitted", {"queue": "team-a"}), ("scheduling", {}),
                          ("running", {}), ("checkpoint", {"step": 10, "path": "/c/10"}),
                          ("failure", {"kind": "system"}), ("restarting", {"reason": "worker died"}),
                          ("running", {}), ("checkpoint", {"step": 20, "path": "/c/20", "loss": 0.5}),
                          ("finished", {"status": "succeeded"})):
        events.emit("job-1", event, **fields)
    events.emit("job-2", "submitted")
    body = valid("jobs", api.jobs())
    job = next(j for j in body["jobs"] if j["name"] == "job-1")
    assert (job["state"], job["queue"], job["restarts"], job["failures"], job["checkpoints"]) == \
        ("succeeded", "team-a", 1, 1, 2)
    assert job["last_checkpoint"] == "/c/20" and job["last_step"] == 20
    assert [s["state"] for s in job["timeline"]] == ["submitted", "admitted", "scheduling", "running",
                                                     "restarting", "running", "finished"]
    assert [m["loss"] for m in job["metrics"]] == [0.5]
    one = valid("job_events", api.job_events("job-1"))
    assert len(one["events"]) == 10 and one["summary"]["state"] == "succeeded"
    assert valid("job_events", api.job_events("nope"))["available"] is False


def test_borrowed_and_lent_follow_the_cohort():
    rows = [{"name": "a", "cohort": "r", "quota": {"H100": 2}, "used": {"H100": 4}},
            {"name": "b", "cohort": "r", "quota": {"H100": 2}, "used": {"H100": 0}},
            {"name": "c", "cohort": None, "quota": {"H100": 2}, "used": {"H100": 0}}]
    api._borrow_and_lend(rows)
    assert rows[0]["borrowed"] == {"H100": 2} and rows[0]["lent"] == {"H100": 0}
    assert rows[1]["borrowed"] == {"H100": 0} and rows[1]["lent"] == {"H100": 2}
    assert rows[2]["lent"] == {"H100": 0}


def test_cost_series_is_cumulative_per_team_and_agrees_with_the_report(tmp_path):
    missing = valid("cost", api.cost(path=tmp_path / "absent.sqlite"))
    assert missing["available"] is False and "ainative.cost.enable" in missing["fix"]
    assert not (tmp_path / "absent.sqlite").exists()      # reading never creates a ledger
    path = tmp_path / "ledger.sqlite"
    book = ledger_mod.Ledger(path)
    t0 = 1_800_000_000.0
    book.record([Charge("j1", "qa", "team-a", "H100", t0, t0 + 60, 120, 2.0),
                 Charge("j1", "qa", "team-a", "H100", t0 + 60, t0 + 120, 120, 3.0),
                 Charge("j2", "qb", None, "H100", t0, t0 + 120, 240, 1.5)],
                events=[(t0 + 100, "j1", "warn", "budget", "80% of the budget")])
    book.close()
    body = valid("cost", api.cost(since=t0 - 1, path=path, buckets=4))
    series = {s["team"]: s["usd"] for s in body["series"]}
    assert series["team-a"] == [0.0, 0.0, 2.0, 2.0, 5.0] and series["qb"] == [0, 0, 0, 0, 1.5]
    assert body["report"]["total_usd"] == pytest.approx(6.5)
    assert [e["kind"] for e in body["events"]] == ["warn"]
    report = valid("cost_report", api.cost_report("team", None, None, path))
    assert {r["key"]: r["cost_usd"] for r in report["rows"]} == {"team-a": 5.0, "(none)": 1.5}


def test_cli_cost_json_is_the_api(tmp_path, capsys):
    path = tmp_path / "ledger.sqlite"
    ledger_mod.Ledger(path).record([Charge("j", "q", "t", "H100", 0.0, 3600.0, 3600.0, 4.0)])
    assert cli.main(["cost", "report", "--by", "queue", "--ledger", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == api.cost_report("queue", None, None, path)


def test_non_loopback_bind_without_a_token_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-token"))
    assert server.cluster_token() is None
    for host in ("127.0.0.1", "::1", "localhost"):
        assert server.check_bind(host, None) is None
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(errors.ConfigError, match="without authentication"):
            server.check_bind(host, None)
    assert server.check_bind("0.0.0.0", "tok") == "tok"
    # the CLI refuses before connecting to Ray or opening a socket
    assert cli.main(["dashboard", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to serve the dashboard on '0.0.0.0'" in capsys.readouterr().err
    (tmp_path / "tok").write_text("s3cret\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert server.check_bind("0.0.0.0", server.cluster_token()) == "s3cret"


@pytest.fixture
def guarded(no_ray):
    srv, thread, url = server.start_in_thread(token="s3cret")
    yield url
    server.stop(srv, thread)


def test_a_token_is_required_as_bearer_or_login_cookie(guarded):
    url = guarded
    r = requests.get(f"{url}/api/v1/cluster", timeout=5)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = requests.get(f"{url}/api/v1/cluster", headers={"Authorization": "Bearer wrong"}, timeout=5)
    assert r.status_code == 401
    r = requests.get(f"{url}/api/v1/cluster", headers={"Authorization": "Bearer s3cret"}, timeout=5)
    assert r.status_code == 200 and r.json()["available"] is False
    assert r.headers["x-frame-options"] == "DENY" and "default-src 'self'" in r.headers["content-security-policy"]
    page = requests.get(f"{url}/queues", allow_redirects=False, timeout=5)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    s = requests.Session()
    assert s.post(f"{url}/login", data={"token": "nope"}, timeout=5).status_code == 401
    r = s.post(f"{url}/login", data={"token": "s3cret"}, allow_redirects=False, timeout=5)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert "s3cret" not in r.headers["set-cookie"]
    assert s.get(f"{url}/queues", timeout=5).status_code == 200
    assert s.get(f"{url}/api/v1/jobs", timeout=5).status_code == 200


def test_open_on_loopback_and_serves_pages_assets_and_schema():
    srv, thread, url = server.start_in_thread()
    try:
        for path in ("/", "/cluster", "/queues", "/jobs", "/endpoints", "/cost"):
            r = requests.get(url + path, timeout=5)
            assert r.status_code == 200 and "/static/app.js" in r.text
        assert "uPlot" in requests.get(f"{url}/static/uPlot.iife.min.js", timeout=5).text[:200]
        assert requests.get(f"{url}/api/v1/schema", timeout=5).json() == schema.json_schema()
        assert "cluster" in requests.get(f"{url}/api/v1", timeout=5).json()["resources"]
        assert requests.get(f"{url}/api/v1/cost?since=someday", timeout=5).status_code == 400
    finally:
        server.stop(srv, thread)


def test_queue_budgets_reach_the_cost_api_with_their_warn_line(tmp_path, monkeypatch):
    import ainative as ai

    queues = [ai.Queue("team-a", quota={"H100": 2}),
              ai.Queue("team-b", quota={"H100": 2}, budget=ai.Budget(usd=10.0, period="day", warn_at=0.5))]
    rows = [q.to_dict() for q in queues]
    assert list(rows[1])[:6] == ["name", "quota", "cohort", "weight", "borrowing_limit", "lending_limit"]
    assert rows[0]["budget"] is None and rows[1]["budget"]["usd"] == 10.0
    status = {"available": True, "fix": None,
              "queues": [{**r, "used": {}, "running": [], "pending": []} for r in rows]}
    api._borrow_and_lend(status["queues"])
    valid("queues", json.loads(json.dumps(status)))            # what the scheduler's status carries
    monkeypatch.setattr(api, "queues", lambda: status)
    path = tmp_path / "ledger.sqlite"
    ledger_mod.Ledger(path).record([Charge("j", "team-b", None, "H100", 0.0, 60.0, 120.0, 4.0)])
    body = valid("cost", api.cost(since=0, path=path))
    assert body["budgets"] == {"team-b": {**rows[1]["budget"], "warn_usd": 5.0}}
    assert [s["team"] for s in body["series"]] == ["team-b"]   # the budget's line has its spend


def test_endpoint_rows_carry_the_slo_from_the_metrics_store():
    from ainative.serve import _metrics

    for slo, p99, ok in ((50.0, 99.0, False), (200.0, 99.0, True), (None, 99.0, None)):
        store = _metrics.MetricsStore("ep", latency_slo_ms=slo)
        store.report("r", {"started_at": 0.0, "ready_at": 0.0, "now": time.time(),
                           "latencies": [(time.time(), float(ms)) for ms in range(1, 101)],
                           "batch_sizes": {1: 100}, "completed": 100, "failed": 0, "queue": 0, "ongoing": 0})
        row = api.endpoint_row("ep", store.summary(10.0), 1)
        assert row["latency_slo_ms"] == slo and row["p99_ms"] == p99 and row["slo_ok"] is ok
        valid("endpoints", {"available": True, "fix": None, "endpoints": [row]})
