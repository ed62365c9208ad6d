"""Live preemption holds what its victims free for the job they were preempted for (a claim):
victims release one by one, after their checkpoints; what the first one frees must not go to the
next job in line (the requeued victim itself, or a borrower asking again) or the preemptor never
starts. Stepped with the simulator's placer in live mode (``release_on_preempt=False``)."""

from __future__ import annotations

from ainative.policy.admission import Job
from ainative.policy.engine import Engine, PolicyConfig
from ainative.policy.gpuindex import GpuIndex
from ainative.policy.queues import Queue

LIVE = dict(min_runtime_s=0.0, ping_pong_s=0.0, preempt_retry_s=0.0, release_on_preempt=False)


def engine(queues, nodes):
    return Engine(queues, GpuIndex([(f"n{i}", "H100", g) for i, g in enumerate(nodes)]), PolicyConfig(**LIVE))


def submit(eng, job_id, queue, gpus, now, prio=0):
    eng.submit(Job(job_id, queue, gpus, "H100", prio, True, now, None), now)
    return eng.schedule(now)


def started(dec):
    return [j.job_id for j in dec.started]


def test_the_requeued_victim_does_not_take_back_what_it_freed():
    eng = engine([Queue("a", quota={"H100": 4})], [4])
    submit(eng, "low1", "a", 2, 0.0)
    submit(eng, "low2", "a", 2, 1.0)
    dec = submit(eng, "high", "a", 4, 2.0, prio=10)
    assert sorted(j.job_id for j in dec.preempted) == ["low1", "low2"]
    assert eng.usage.used("a", "H100") == 8                 # the victims' 4 + the claim's 4
    eng.finish("low2", 3.0, "preempted")                     # the first victim is gone: requeued
    dec = submit(eng, "low2", "a", 2, 3.0)
    assert not dec.started and not dec.preempted
    assert "over quota" in eng.jobs["low2"].reason
    eng.finish("low1", 4.0, "preempted")
    assert started(eng.schedule(4.0)) == ["high"]
    assert eng.usage.used("a", "H100") == 4 and not eng.claims
    assert not eng.schedule(5.0).preempted                  # low2 waits, the same priority holds


def test_a_borrower_of_the_cohort_does_not_take_the_claimed_nodes():
    # b borrowed 2 of a's quota; a's priority job reclaims it. Once the borrower releases, b asks
    # again (the burst still goes on): it must wait while a's job is claimed, not borrow it back.
    queues = [Queue("a", quota={"H100": 4}, cohort="c"), Queue("b", quota={"H100": 4}, cohort="c")]
    eng = engine(queues, [4, 4])
    for k in range(3):
        submit(eng, f"b{k}", "b", 2, float(k))
    submit(eng, "a-low", "a", 2, 3.0)
    dec = submit(eng, "a-high", "a", 4, 10.0, prio=10)
    assert sorted(j.job_id for j in dec.preempted) == ["a-low", "b2"]
    eng.finish("b2", 11.0, "preempted")
    dec = submit(eng, "b3", "b", 2, 11.0)                   # the borrower asks again at once
    assert "b3" not in eng.running and not dec.preempted
    eng.finish("a-low", 12.0, "preempted")
    assert started(eng.schedule(12.0)) == ["a-high"]
    assert "b3" not in eng.running and eng.usage.used("b", "H100") == 4


def test_a_claim_ends_when_its_victims_are_gone_and_it_still_does_not_fit():
    eng = engine([Queue("a", quota={"H100": 8})], [4])
    submit(eng, "low", "a", 4, 0.0)
    submit(eng, "high", "a", 4, 1.0, prio=10)
    assert eng.claims and eng.usage.used("a", "H100") == 8
    eng.finish("low", 2.0, "preempted")
    eng.placer.take([(0, 4.0)])                              # something else holds the node
    # what a victim held is freed a little after its lease (a group removed, a replica draining):
    # the claim holds a while, then gives up so that the job may search again
    assert not eng.schedule(2.0).started and eng.claims and eng.usage.used("a", "H100") == 4
    assert not eng.schedule(33.0).started
    assert not eng.claims and eng.usage.used("a", "H100") == 0


def test_a_victim_s_gpus_freed_late_do_not_go_to_the_requeued_victim():
    eng = engine([Queue("a", quota={"H100": 8})], [4])
    submit(eng, "low", "a", 4, 0.0)
    submit(eng, "high", "a", 4, 1.0, prio=10)
    eng.finish("low", 2.0, "preempted")                      # released its lease ...
    eng.placer.take([(0, 4.0)])                              # ... its gang not gone yet
    dec = submit(eng, "low", "a", 4, 2.5)                    # requeued at once
    assert not dec.started and not dec.preempted and eng.claims
    eng.placer.release([(0, 4.0)])                           # the gang is gone a second later
    assert started(eng.schedule(3.5)) == ["high"]


def test_a_cancelled_claimant_gives_its_quota_back():
    eng = engine([Queue("a", quota={"H100": 4})], [4])
    submit(eng, "low", "a", 4, 0.0)
    submit(eng, "high", "a", 4, 1.0, prio=10)
    eng.cancel("high")
    assert not eng.claims and eng.usage.used("a", "H100") == 4


def test_higher_priority_jobs_are_not_held_back_by_a_claim():
    eng = engine([Queue("a", quota={"H100": 12})], [4, 4])
    submit(eng, "low", "a", 4, 0.0)
    submit(eng, "filler", "a", 4, 0.5, prio=20)
    submit(eng, "mid", "a", 4, 1.0, prio=10)                 # preempts low; claims its node
    eng.finish("low", 2.0, "preempted")
    dec = submit(eng, "top", "a", 4, 2.0, prio=30)          # outranks the claim: takes the node
    assert started(dec) == ["top"]


def test_a_pack_gang_preempts_across_nodes_when_no_single_node_can_be_freed():
    # Serve spread an endpoint over two 2-GPU nodes: its base (not preemptible) holds one GPU on
    # each, its two extras the others. A 2-bundle PACK gang reclaiming 2 GPUs cannot get one whole
    # node, but Ray places PACK across nodes: both extras are its victims.
    from ainative.scheduling._placer import BundlePlacer

    one = {"GPU": 1.0, "accelerator_type:H100": 0.001}
    nodes = {n: {"GPU": 2.0, "CPU": 2.0, "accelerator_type:H100": 1.0} for n in ("x", "y")}
    queues = [Queue("a", quota={"H100": 2}, cohort="c"), Queue("b", quota={"H100": 2}, cohort="c")]
    eng = Engine(queues, BundlePlacer(nodes), PolicyConfig(**LIVE))
    jobs = [Job("base", "b", 2.0, "H100", 0, False, 0.0, None, (one, one)),
            Job("x1", "b", 1.0, "H100", 0, True, 1.0, None, (one,)),
            Job("x2", "b", 1.0, "H100", 0, True, 2.0, None, (one,))]
    where = {"base": ["x", "y"], "x1": ["x"], "x2": ["y"]}
    for j in jobs:
        eng.submit(j, j.submit_s)
        eng.schedule(j.submit_s)
        assert j.running
    for j in jobs:                                     # where the reconcile found the replicas
        eng.placer.release(j.placement)
        j.placement = [(n, 1.0, dict(one)) for n in where[j.job_id]]
        eng.placer.take(j.placement)
    eng.submit(Job("gang", "a", 2.0, "H100", 0, True, 5.0, None, (one, one)), 5.0)
    dec = eng.schedule(5.0)
    assert sorted(j.job_id for j in dec.preempted) == ["x1", "x2"]
    eng.finish("x1", 6.0, "preempted")
    eng.finish("x2", 6.0, "preempted")
    assert started(eng.schedule(6.0)) == ["gang"]
