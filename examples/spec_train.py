"""The training function behind examples/specs/train.yaml, and a runner for that spec.

    python examples/spec_train.py                 # same as: ainative apply examples/specs/train.yaml
    ray job submit --working-dir . -- python examples/spec_train.py
"""

from __future__ import annotations

import os
import sys

import ainative as ai


def train_fn(config: dict) -> None:
    """Each rank streams its shard of one epoch and reports how many rows it saw."""
    ctx = ai.train.get_context()
    rows = 0
    for step, batch in enumerate(ai.train.get_dataset_shard("train").iter_batches(
            batch_size=config["batch_size"], epoch=0)):
        rows += batch.num_rows
        ai.train.report({"step": step + 1, "rows": rows, "world_size": ctx.world_size})


if __name__ == "__main__":
    from ainative import apply

    sys.path.insert(0, os.getcwd())
    spec = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs", "train.yaml")
    ai.connect(num_cpus=4, num_gpus=4, accelerator_type="H100", include_dashboard=False)
    results = apply.apply_file(spec)
    sys.exit(0 if all(r.get("ok") for r in results) else 1)
