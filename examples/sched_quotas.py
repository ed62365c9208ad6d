"""Two teams share 4 GPUs: team-b borrows team-a's idle quota, team-a reclaims it by preemption,
and the preempted job resumes from its checkpoint. Then the same policy in the simulator.

    python examples/sched_quotas.py
    ray job submit --working-dir . -- python examples/sched_quotas.py
"""

from __future__ import annotations

import threading
import time

import ainative
from ainative import scheduling
from ainative.policy.engine import PolicyConfig
from ainative.scheduling import protocol

cluster = ainative.connect(num_gpus=4, accelerator_type="H100")   # 4 logical H100s when embedded
GPU = ainative.Resources(cpus=0.25, accelerator=ainative.Accelerator("H100"))


def job(name: str, queue: str, gpus: int) -> protocol.JobRequest:
    return protocol.JobRequest(name=name, kind="gang", bundles=(GPU,) * gpus, queue=queue)


def live_demo() -> None:
    scheduling.configure([ainative.Queue("team-a", quota={"H100": 2}, cohort="lab"),
                          ainative.Queue("team-b", quota={"H100": 2}, cohort="lab")],
                         policy=PolicyConfig(min_runtime_s=0, preempt_retry_s=0), fresh=True)
    try:
        b = protocol.admission_for("team-b").admit(job("b-train", "team-b", 4), timeout_s=30)
        gang = scheduling.reserve([GPU] * 4)               # borrows team-a's 2 idle GPUs
        print("team-b runs on 4 GPUs (2 borrowed)")
        step = 0
        for step in range(1, 11):                          # b-train works a while alone
            time.sleep(0.05)
            assert b.poll(protocol.Usage(bundles_in_use=4, step=step)) is None
        got: dict = {}
        waiter = threading.Thread(target=lambda: got.update(
            lease=protocol.admission_for("team-a").admit(job("a-train", "team-a", 2), timeout_s=60)))
        waiter.start()
        stop = None
        while stop is None:                                # b-train's loop: work, then poll
            step += 1
            time.sleep(0.1)
            stop = b.poll(protocol.Usage(bundles_in_use=4, step=step))
        print(f"team-b asked to stop: {stop.reason} ({stop.message}); checkpoint at step {step}")
        gang.release()
        b.release(f"stopped: {stop.reason}")
        waiter.join()
        print("team-a admitted; queues:")
        from ainative.cli.queue import table

        resume = threading.Thread(target=lambda: got.update(
            resumed=protocol.admission_for("team-b").admit(job("b-train", "team-b", 2), timeout_s=60)))
        resume.start()                                     # b-train re-run: fits its own quota
        resume.join()
        print(table(scheduling.status()))
        print(f"team-b resumes from step {step} on its own 2 GPUs")
        got["resumed"].release("succeeded")
        got["lease"].release("succeeded")
    finally:
        scheduling.shutdown()


def simulated() -> None:
    report = ainative.simulate("examples/sim/small_trace.csv", "examples/sim/small_cluster.yaml",
                               policy="ainative")
    base = ainative.simulate("examples/sim/small_trace.csv", "examples/sim/small_cluster.yaml",
                             policy="fifo")
    print(f"simulated: avg JCT {report['avg_jct_s']:.0f} s (fifo {base['avg_jct_s']:.0f} s), "
          f"Jain {report['jain_fairness']:.3f} (fifo {base['jain_fairness']:.3f})")


if __name__ == "__main__":
    h100 = cluster.resources().to_dict()["accelerators"].get("H100", {}).get("total", 0)
    if h100 >= 4:
        live_demo()
    else:
        print(f"this cluster has {h100:g} H100 GPUs; the live part needs 4 (skipped)")
    simulated()
    cluster.shutdown()
