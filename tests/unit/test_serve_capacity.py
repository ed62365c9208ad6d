"""The endpoint capacity controller stepped with a fake admission and a fake board (no Ray):
scale-ups ask admission, refusals keep the size and say why, stops scale toward min_replicas and
leases go only once Serve runs no more replicas than stay admitted; endpoint budgets."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import ainative as ai
from ainative import errors
from ainative.cost import probes
from ainative.scheduling import placement, protocol
from ainative.serve import _capacity


class FakeLease:
    def __init__(self, job_id: str) -> None:
        self.job_id, self.stop, self.released, self.polls = job_id, None, None, []

    def poll(self, usage: protocol.Usage | None = None) -> protocol.StopRequest | None:
        self.polls.append(usage)
        return self.stop

    def release(self, outcome: str) -> None:
        self.released = outcome


class FakeAdmission:
    """Admits while ``free`` > 0 (one unit per bundle); otherwise refuses like a timed-out wait."""

    def __init__(self, free: int) -> None:
        self.free, self.leases, self.requests = free, [], []
        self.lock = threading.Lock()

    def admit(self, request: protocol.JobRequest, timeout_s: float | None = None) -> FakeLease:
        with self.lock:
            self.requests.append(request)
            if len(request.bundles) > self.free:
                raise errors.AdmissionError("not admitted", reason="over quota: queue 'c' short by 1")
            self.free -= len(request.bundles)
            lease = FakeLease(f"{request.name}-{len(self.leases)}")
            self.leases.append(lease)
            return lease


class Controller(_capacity.CapacityController):
    lease_poll_s = 0.0

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.board_state = {"want": 1, "running": 1, "utilization": None}

    def _sync_board(self) -> dict[str, Any]:
        return dict(self.board_state)


def make(free: int, *, lo: int = 1, hi: int = 4, budget: Any = None, idle: Any = None,
         expected_duration_s: float | None = None):
    ep = ai.Endpoint(lambda: (lambda x: x), name="ep", queue="c", budget=budget, idle=idle,
                     resources=ai.Resources(cpus=0.1, accelerator=ai.Accelerator("H100", 0.5)),
                     autoscaling=ai.AutoscalingConfig(min_replicas=lo, max_replicas=hi),
                     expected_duration_s=expected_duration_s)
    stopped: list[str] = []
    adm = FakeAdmission(free)
    ctl = Controller(ep, adm, on_stop=stopped.append)
    ctl.base = adm.admit(ctl._request("ep", lo, False))
    ctl._record(ctl.base, lo)
    ctl._admitted_s = time.time()
    return ctl, adm, stopped


def settle(ctl: Controller, cond, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ctl.step()
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"not settled: {ctl.state()}")


def test_scale_up_asks_one_lease_per_replica_and_caps_at_admitted():
    ctl, adm, _ = make(free=3)
    ctl.board_state.update(want=4)
    settle(ctl, lambda: ctl.cap == 3 and ctl._inflight == 0)
    extras = [r for r in adm.requests if r.name != "ep"]
    assert all(r.kind == "endpoint" and r.preemptible and len(r.bundles) == 1 for r in extras)
    assert not adm.requests[0].preemptible
    assert "over quota" in ctl.why and ctl.cap == 3          # the 4th was refused: size kept


def test_surplus_released_only_after_serve_scaled_down():
    ctl, adm, _ = make(free=3)
    ctl.board_state.update(want=3, running=1)
    settle(ctl, lambda: ctl.cap == 3)
    ctl.board_state.update(want=1, running=3)              # policy wants fewer; Serve still runs 3
    ctl.step()
    assert ctl.cap == 3 and all(lease.released is None for lease in adm.leases)
    ctl.board_state.update(running=2)
    ctl.step()
    assert ctl.cap == 2
    ctl.board_state.update(running=1)
    ctl.step()
    assert ctl.cap == 1 and adm.leases[0].released is None   # the base lease stays
    assert [lease.released for lease in adm.leases[1:]] == ["succeeded", "succeeded"]


def test_preempted_extra_scales_toward_min_never_below():
    ctl, adm, _ = make(free=3, lo=1)
    ctl.board_state.update(want=3, running=1)
    settle(ctl, lambda: ctl.cap == 3)
    ctl.board_state.update(running=3)
    for lease in adm.leases:
        lease.stop = protocol.StopRequest("preempted")
    adm.leases[0].stop = None       # the base lease is not preemptible: the scheduler never asks
    ctl.step()
    assert ctl.cap == 1                                        # the cap drops at once ...
    assert all(lease.released is None for lease in adm.leases)   # ... leases wait for Serve
    ctl.board_state.update(running=1, want=1)
    ctl.step()
    assert [lease.released for lease in adm.leases[1:]] == ["stopped: preempted"] * 2
    assert ctl.cap == 1 and adm.leases[0].released is None


def wait_stopped(stopped: list[str]) -> None:
    deadline = time.monotonic() + 5
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("own", [None, "stop", "min_replicas"])
def test_a_stop_of_the_base_lease_deletes_the_endpoint_whatever_its_own_budget(own):
    # admission stops the base lease only at a cap (a queue budget's, min_replicas included: the
    # guardrails stopped the extras earlier) or for a reason of its own: the endpoint goes
    budget = ai.Budget(usd=1000.0, action=own) if own else None
    ctl, adm, stopped = make(free=3, budget=budget)
    ctl.board_state.update(want=3)
    settle(ctl, lambda: ctl.cap == 3)
    adm.leases[0].stop = protocol.StopRequest("budget", message="queue budget spent")
    ctl.step()
    wait_stopped(stopped)
    assert stopped == ["stopped: budget"]


def test_own_min_replicas_budget_keeps_the_base_spend_to_its_expected_end_then_stops_at_the_cap():
    # 1 base replica (0.5 GPU) + 2 extras; 1.5 GPU-hour budget; the endpoint serves 2 h in all,
    # so 1 GPU-h of it is the base's and 0.5 is what the extras may use
    budget = ai.Budget(gpu_hours=1.5, warn_at=0.99, action="min_replicas")
    ctl, adm, stopped = make(free=3, lo=1, hi=3, budget=budget, expected_duration_s=7200.0)
    ctl.board_state.update(want=3)
    settle(ctl, lambda: ctl.cap == 3)
    assert ctl.hold is None
    for rec in ctl.records:                     # 40 min in: 1.5 GPU x 2/3 h = 1.0 GPU-h spent
        rec.admitted_s -= 2400.0
    ctl._admitted_s -= 2400.0
    # the base still spends 0.5 GPU x 80 min = 0.67 GPU-h to its end: more than is left (0.5)
    ctl.step()
    assert ctl.hold == "budget" and ctl.cap == 1 and not stopped
    assert "kept for min_replicas" in ctl.why
    ctl.board_state.update(want=3, running=1)
    ctl.step()
    assert ctl.cap == 1 and ctl._inflight == 0               # scale-ups refused while held
    for rec in ctl.records[:1]:                 # the base alone reaches the cap: it stops there
        rec.admitted_s -= 4000.0
    ctl.step()
    wait_stopped(stopped)
    assert stopped == ["stopped: budget"]


def test_own_min_replicas_budget_without_an_expected_end_serves_on_past_the_cap_flagged():
    from ainative import events

    ctl, adm, stopped = make(free=3, budget=ai.Budget(gpu_hours=0.1, action="min_replicas"))
    ctl.records[0].admitted_s -= 3600.0          # 0.5 GPU-h: past the cap
    ctl.step()
    ctl.step()
    assert ctl.hold == "budget" and ctl.cap == 1 and not stopped
    overruns = [e for e in events.read("ep") if e["event"] == "budget_overrun"]
    assert len(overruns) == 1 and "expected_duration_s" in overruns[0]["message"]


def test_endpoint_budget_sums_all_leases():
    ctl, adm, stopped = make(free=3, budget=ai.Budget(gpu_hours=1.0, warn_at=0.5, action="min_replicas"))
    ctl.board_state.update(want=3)
    settle(ctl, lambda: ctl.cap == 3)
    for rec in ctl.records:                       # pretend each has held 0.5 GPU for an hour
        rec.admitted_s -= 3600.0
    usd, hours = ctl.spent()
    assert hours == pytest.approx(1.5, rel=1e-3)   # 3 leases x 0.5 GPU x 1 h
    ctl.step()
    assert ctl.hold == "budget" and ctl.cap == 1 and not stopped
    from ainative import events      # warn_at and the cap crossed in one poll: both reported

    assert {"budget_warning", "scaled_to_min"} <= {e["event"] for e in events.read("ep")}


def test_idle_stop_holds_scale_ups_until_busy():
    ctl, adm, _ = make(free=3, idle=ai.IdlePolicy(threshold=0.5, window_s=1.0))
    assert adm.requests[0].metadata["idle"] is None         # min_replicas are not idle-reclaimed
    ctl.board_state.update(want=2, utilization=0.0)
    settle(ctl, lambda: ctl.cap == 2)
    assert adm.requests[-1].metadata["idle"] is not None
    adm.leases[-1].stop = protocol.StopRequest("idle", message="idle")
    ctl.step()
    assert ctl.cap == 1 and ctl.hold == "idle"
    assert adm.leases[-1].polls[-1].accelerator_utilization == 0.0
    ctl.board_state.update(utilization=0.9, running=1)
    settle(ctl, lambda: ctl.hold is None and ctl.cap == 2)


def test_close_releases_everything():
    ctl, adm, _ = make(free=3)
    ctl.board_state.update(want=3)
    settle(ctl, lambda: ctl.cap == 3)
    ctl.close("succeeded")
    assert all(lease.released == "succeeded" for lease in adm.leases)
    assert all(r["released_s"] is not None for r in ctl.state()["leases"])


def test_probe_names(tmp_path, monkeypatch):
    path = tmp_path / "u"
    probe = probes.resolve_probe(f"file:{path}")
    assert probe() is None
    path.write_text("0.25\n")
    assert probe() == 0.25
    assert probes.resolve_probe("none") is None
    assert isinstance(probes.resolve_probe("ainative.cost.probes:ManualProbe"), probes.ManualProbe)
    with pytest.raises(errors.ConfigError, match="AINATIVE_UTILIZATION_PROBE"):
        probes.resolve_probe("no.such.module:probe")
    monkeypatch.setenv(probes.PROBE_ENV, f"file:{path}")
    assert probes.probe_from_env()() == 0.25


def test_unknown_queue_is_a_config_error(monkeypatch):
    monkeypatch.setattr(placement, "configured_queues", lambda: ["a", "default"])
    with pytest.raises(errors.ConfigError, match="names no configured queue"):
        placement.check_queue("reserve", "nope")
    assert issubclass(errors.UnknownQueueError, errors.ConfigError)
    placement.check_queue("reserve", "a")
    monkeypatch.setattr(placement, "configured_queues", lambda: None)
    placement.check_queue("reserve", "anything")        # no scheduler: nothing admits by queue
    with pytest.raises(errors.ConfigError):
        ai.Endpoint(lambda: None, name="x", budget="lots")
    with pytest.raises(errors.ConfigError, match="action"):
        ai.Budget(usd=1.0, action="scale_down")


def test_queued_scale_ups_are_withdrawn_when_a_hold_starts():
    """A scale-up still waiting in the scheduler's queue when the endpoint is held at min (budget
    or idle) is withdrawn (``JobRequest.cancelled``), not admitted and charged a moment later."""
    ctl, adm, _ = make(free=1, lo=1, hi=3)
    request = ctl._extra_request()
    assert request.cancelled is not None and request.cancelled() is False
    ctl._to_min("budget", "budget of queue 'c' exhausted")
    assert request.cancelled() is True
    ctl.close()


def test_own_min_replicas_budget_too_small_for_the_expected_end_is_refused_before_admission():
    budget = ai.Budget(gpu_hours=0.5, action="min_replicas")       # 0.5 GPU for 2 h needs 1.0
    ep = ai.Endpoint(lambda: (lambda x: x), name="ep2", queue="c", budget=budget,
                     resources=ai.Resources(cpus=0.1, accelerator=ai.Accelerator("H100", 0.5)),
                     autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=2),
                     expected_duration_s=7200.0)
    adm = FakeAdmission(3)
    ctl = Controller(ep, adm, on_stop=lambda _: None)
    with pytest.raises(errors.BudgetExceededError, match="expected_duration_s") as info:
        ctl.admit_initial(timeout_s=1.0)
    assert info.value.reservation == pytest.approx(1.0) and not adm.requests    # nothing taken
