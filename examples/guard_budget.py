"""A training job hits its budget, is checkpointed and stopped, then resumes when the budget is
raised; the spend ledger and the cost report show every cent.

    python examples/guard_budget.py
    ray job submit --working-dir . -- python examples/guard_budget.py

Prices are absurd on purpose (a CPU core at $1800/hour = $0.50/s) so the budget runs out in
seconds; on a GPU cluster use ``ai.PriceTable({"H100": 4.0})`` and GPU resources. A job is billed
from its admission, worker start-up included: $6 (12 s) leaves several seconds of steps after a
start-up of 3-5 s; a busy machine that takes longer to start the worker spends the whole budget
on it, which the first run's line then says (and the raised budget still resumes the job).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import ainative as ai


def train_fn(config: dict) -> None:
    start = 0
    checkpoint = ai.train.get_checkpoint()          # None on the first run
    if checkpoint:
        with open(os.path.join(checkpoint, "state.json")) as f:
            start = json.load(f)["step"]
        print(f"resuming at step {start}")
    for step in range(start, config["steps"]):
        time.sleep(0.1)                             # one "training step"
        if (step + 1) % 5 == 0:
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "state.json"), "w") as f:
                    json.dump({"step": step + 1}, f)
                ai.train.report({"step": step + 1}, checkpoint=d)
        else:
            ai.train.report({"step": step + 1})


def main() -> None:
    ai.connect()                                    # joins RAY_ADDRESS under `ray job submit`
    work = tempfile.mkdtemp(prefix="ainative-guard-")
    guard = ai.cost.enable(prices=ai.PriceTable(cpu_core_hour_usd=1800.0),
                           ledger_path=os.path.join(work, "ledger.sqlite"),
                           config=ai.cost.GuardrailConfig(lookahead_s=1.0, stop_grace_s=20.0))
    try:
        def job(budget_usd: float, steps: int) -> ai.TrainJob:
            return ai.TrainJob(train_fn, workers=1, resources=ai.Resources(cpus=1), name="capped",
                               config={"steps": steps}, budget=ai.Budget(usd=budget_usd),
                               checkpoint=ai.CheckpointConfig(path=os.path.join(work, "ckpt")),
                               progress=False)

        first = job(6.0, 10_000).run()
        stopped_at = first.history[-1]["step"] if first.history else 0   # 0: start-up ate the budget
        print(f"first run: {first.status} at step {stopped_at} (checkpoint {first.checkpoint})")
        try:
            job(6.0, 10_000).run()
        except ai.errors.BudgetExceededError as exc:
            print(f"re-run with the same budget refused: {exc}")
        second = job(45.0, stopped_at + 10).run()
        print(f"second run, budget raised to $45: {second.status}, steps "
              f"{second.history[0]['step']}..{second.history[-1]['step']}")
        print(ai.cost.report(by="job", path=guard.ledger_path).table())
    finally:
        guard.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
