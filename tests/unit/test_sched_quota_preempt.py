"""Preemption that frees what blocks: the queue's quota (priority inside a queue, reclaim of quota
lent across a cohort), not only placement. The engine is stepped with the simulator's placer."""

from __future__ import annotations

import pytest

from ainative.policy.admission import Job
from ainative.policy.engine import Engine, PolicyConfig
from ainative.policy.gpuindex import GpuIndex
from ainative.policy.queues import Queue

NO_WINDOWS = dict(min_runtime_s=0.0, ping_pong_s=0.0)


def engine(queues, nodes=(("n0", "H100", 4),), **cfg):
    return Engine(queues, GpuIndex(list(nodes)), PolicyConfig(**cfg))


def submit(eng, job_id, queue, gpus, now, prio=0, pre=True):
    eng.submit(Job(job_id, queue, gpus, "H100", prio, pre, now, 1000.0), now)
    return eng.schedule(now)


def test_priority_preemption_under_quota_pressure_on_a_cluster_with_free_gpus():
    # The case: 4 H100s, queue quota 3; a priority-0 preemptible job holds 2 (2 GPUs stay
    # free); a priority-10 job asks 2: the quota, not the cluster, blocks it.
    eng = engine([Queue("a", quota={"H100": 3})], **NO_WINDOWS)
    submit(eng, "low", "a", 2, 0.0)
    assert "low" in eng.running and eng.placer.free_gpus() == 2
    dec = submit(eng, "high", "a", 2, 1.0, prio=10)
    assert [j.job_id for j in dec.preempted] == ["low"]
    assert "high" in eng.running and [j.job_id for j in dec.started] == ["high"]
    assert eng.usage.used("a", "H100") == 2 and eng.preemptions == 1
    assert not eng.jobs["low"].running and eng.jobs["low"].preemptions == 1     # re-queued
    assert not eng.schedule(2.0).started                     # and waits on the quota, not placement
    assert "over quota" in eng.jobs["low"].reason and "short by 1" in eng.jobs["low"].reason


def test_quota_preemption_takes_only_the_victims_it_needs():
    eng = engine([Queue("a", quota={"H100": 4})], nodes=(("n0", "H100", 8),), **NO_WINDOWS)
    for k, gpus in enumerate((1, 1, 2)):
        submit(eng, f"low{k}", "a", gpus, float(k))
    dec = submit(eng, "high", "a", 2, 10.0, prio=5)     # quota 4, holds 4: must free 2
    assert [j.job_id for j in dec.preempted] == ["low2"]       # newest first; one 2-GPU job suffices
    assert "high" in eng.running and eng.usage.used("a", "H100") == 4


def test_same_priority_and_other_queues_are_not_quota_victims():
    eng = engine([Queue("a", quota={"H100": 3}), Queue("b", quota={"H100": 3})],
                 nodes=(("n0", "H100", 8),), **NO_WINDOWS)
    submit(eng, "a-same", "a", 2, 0.0, prio=10)
    submit(eng, "b-low", "b", 2, 0.0, prio=0)
    dec = submit(eng, "a-high", "a", 2, 1.0, prio=10)
    assert not dec.preempted and "a-high" not in eng.running
    assert "over quota" in eng.jobs["a-high"].reason and "short by 1" in eng.jobs["a-high"].reason


def test_cohort_reclaim_of_lent_quota_frees_quota_and_placement():
    # 8 H100s; a and b have 4 each in one cohort. b borrowed 2 of a's unused quota (holds 6), a holds
    # 2 with a low-priority job. A high-priority a job asks 4: over a's quota (it would hold 6) and the
    # cohort has nothing to lend, and no room on the nodes. Victims: a's own low-priority job (frees
    # quota) and b's newest borrower (gives back a's lent quota and the room); b keeps its nominal 4.
    queues = [Queue("a", quota={"H100": 4}, cohort="r"), Queue("b", quota={"H100": 4}, cohort="r")]
    eng = engine(queues, nodes=(("n0", "H100", 8),), **NO_WINDOWS)
    for k in range(3):
        submit(eng, f"b{k}", "b", 2, float(k))
    submit(eng, "a-low", "a", 2, 3.0)
    assert eng.usage.used("b", "H100") == 6 and eng.placer.free_gpus() == 0
    dec = submit(eng, "a-high", "a", 4, 10.0, prio=10)
    assert sorted(j.job_id for j in dec.preempted) == ["a-low", "b2"]
    assert "a-high" in eng.running
    assert eng.usage.used("a", "H100") == 4 and eng.usage.used("b", "H100") == 4


def test_cohort_reclaim_never_takes_a_queue_below_its_nominal_quota():
    # b holds exactly its quota; a (quota 2, holds 2) asks 2 more with priority: a can only borrow,
    # and b lends nothing it uses, so b's jobs are not victims and nothing of a's is lower priority.
    queues = [Queue("a", quota={"H100": 2}, cohort="r"), Queue("b", quota={"H100": 6}, cohort="r")]
    eng = engine(queues, nodes=(("n0", "H100", 8),), **NO_WINDOWS)
    submit(eng, "b1", "b", 6, 0.0)
    submit(eng, "a1", "a", 2, 0.0, prio=10)
    dec = submit(eng, "a2", "a", 2, 5.0, prio=10)
    assert not dec.preempted and "a2" not in eng.running and "over quota" in eng.jobs["a2"].reason


def test_protection_windows_still_hold_under_quota_pressure():
    cases = [
        (dict(min_runtime_s=300.0, ping_pong_s=0.0), {}, 100.0),            # ran 100 s < 300 s
        (dict(NO_WINDOWS, max_preemptions=0), {}, 100.0),                    # preemption off
        (NO_WINDOWS, {"pre": False}, 100.0),                                # not preemptible
        (dict(min_runtime_s=0.0, ping_pong_s=1800.0), {"preempted_at": 50.0}, 100.0),   # ping-pong
        (dict(NO_WINDOWS, max_preemptions=2), {"preemptions": 2}, 100.0),   # preempted enough
    ]
    for cfg, victim, now in cases:
        eng = engine([Queue("a", quota={"H100": 3})], **cfg)
        submit(eng, "low", "a", 2, 0.0, pre=victim.get("pre", True))
        low = eng.jobs["low"]
        low.preemptions = victim.get("preemptions", 0)
        low.last_preempted_s = victim.get("preempted_at")
        dec = submit(eng, "high", "a", 2, now, prio=10)
        assert not dec.preempted and "high" not in eng.running, cfg
        assert "low" in eng.running and "over quota" in eng.jobs["high"].reason, cfg


def test_live_mode_quota_victim_is_asked_to_stop_then_the_job_starts():
    eng = engine([Queue("a", quota={"H100": 3})], release_on_preempt=False, **NO_WINDOWS)
    submit(eng, "low", "a", 2, 0.0)
    dec = submit(eng, "high", "a", 2, 1.0, prio=10)
    assert [j.job_id for j in dec.preempted] == ["low"] and "high" not in eng.running
    assert eng.jobs["low"].metadata["stopping"]
    assert not eng.schedule(2.0).preempted                   # asked once, not again
    eng.finish("low", 3.0, "preempted")                      # its lease is released
    assert [j.job_id for j in eng.schedule(3.0).started] == ["high"]


def test_policy_config_is_public_validated_and_settable_from_a_spec():
    import math

    import ainative as ai
    from ainative import errors, spec

    assert ai.PolicyConfig is PolicyConfig
    for bad in (dict(min_runtime_s=math.nan), dict(ping_pong_s=math.inf), dict(aging_s=0.0),
                dict(min_runtime_s=-1.0), dict(max_preemptions=-1), dict(max_preemptions=1.5),
                dict(policy="lottery"), dict(release_on_preempt="yes")):
        with pytest.raises(errors.ConfigError) as info:
            PolicyConfig(**bad)
        assert next(iter(bad)) in str(info.value)
    doc = spec.parse("kind: SchedulerPolicy\nmin_runtime_s: 0\nping_pong_s: 0\nmax_preemptions: 5\n")[0]
    assert spec.build(doc) == PolicyConfig(min_runtime_s=0, ping_pong_s=0, max_preemptions=5)
    with pytest.raises(errors.SpecError, match=r":2: SchedulerPolicy.min_runtime_s"):
        spec.build(spec.parse("kind: SchedulerPolicy\nmin_runtime_s: -5\n")[0])
    with pytest.raises(errors.SpecError, match="min_runtim"):
        spec.parse("kind: SchedulerPolicy\nmin_runtim: 5\n")


def test_the_same_quota_case_in_the_simulator(tmp_path):
    import ainative as ai

    trace = tmp_path / "t.csv"
    trace.write_text("job_id,submit_time_s,duration_s,num_gpus,gpu_type,team,priority\n"
                     "low,0,1000,2,H100,a,0\nhigh,10,100,2,H100,a,10\n")
    cluster = {"node_groups": [{"count": 1, "gpus_per_node": 4, "gpu_type": "H100"}],
               "queues": [{"name": "a", "quota": {"H100": 3}}]}
    report = ai.simulate(trace, cluster, config=ai.PolicyConfig(**NO_WINDOWS)).to_dict()
    assert report["preemptions"] == 1 and report["unscheduled_jobs"] == 0
    # high runs 10-110; low ran 0-10, resumes at 110 with 990 s left + 30 s restart overhead
    assert report["makespan_s"] == pytest.approx(110 + 990 + 30)
