"""Train a small model with DDP on 2 workers, checkpointing every 10 steps, then resume.

    python examples/train_ddp.py
    ray job submit --working-dir . -- python examples/train_ddp.py

Runs on CPU (gloo); on a GPU cluster pass ``resources=ai.Resources(cpus=1,
accelerator=ai.Accelerator("H100"))`` and the same code uses NCCL and ``ctx.device``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import ainative as ai


def train_fn(config: dict) -> None:
    import torch
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    ctx = ai.train.get_context()
    torch.manual_seed(0)
    model = nn.Linear(8, 1).to(ctx.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    start = 0
    checkpoint = ai.train.get_checkpoint()          # None on the first run
    if checkpoint:
        state = torch.load(os.path.join(checkpoint, "state.pt"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
        print(f"resuming at step {start}")
    ddp = DistributedDataParallel(model)
    true_w = torch.arange(1.0, 9.0).unsqueeze(0)
    gen = torch.Generator().manual_seed(ctx.rank * 1000 + start)
    for step in range(start, config["steps"]):
        x = torch.randn(32, 8, generator=gen)
        loss = ((ddp(x) - x @ true_w.T) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics = {"step": step + 1, "loss": loss.item()}
        if (step + 1) % 10 == 0:                    # every rank calls report; rank 0's dir is kept
            with tempfile.TemporaryDirectory() as d:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                            "step": step + 1}, os.path.join(d, "state.pt"))
                ai.train.report(metrics, checkpoint=d)
        else:
            ai.train.report(metrics)


def main() -> None:
    ai.connect()                                    # joins RAY_ADDRESS under `ray job submit`
    storage = tempfile.mkdtemp(prefix="ainative-example-ckpt-")
    job = ai.TrainJob(train_fn, workers=2, resources=ai.Resources(cpus=1), name="example-ddp",
                      config={"steps": 60}, checkpoint=ai.CheckpointConfig(path=storage, keep=2),
                      failure=ai.FailureConfig(max_restarts=2))
    result = job.run()
    print(f"status={result.status} steps={len(result.history)} loss={result.metrics['loss']:.2e} "
          f"checkpoint={result.checkpoint}")
    # Running the same job (same name and checkpoint path) again resumes from its checkpoint.
    longer = ai.TrainJob(train_fn, workers=2, resources=ai.Resources(cpus=1), name="example-ddp",
                         config={"steps": 80}, checkpoint=ai.CheckpointConfig(path=storage, keep=2))
    resumed = longer.run()
    print(f"resumed: ran steps {resumed.history[0]['step']}..{resumed.history[-1]['step']}, "
          f"loss={resumed.metrics['loss']:.2e}")
    assert resumed.history[0]["step"] == 61
    shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    main()
