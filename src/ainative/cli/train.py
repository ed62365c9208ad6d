"""`ainative train --entrypoint module:function --workers N ...`: run a TrainJob from the shell."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ainative import errors


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="run a distributed training function on a gang of workers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ainative train --entrypoint mypkg.train:train_fn --workers 2\n"
               "  ainative train --entrypoint mypkg.train:train_fn --workers 2:4 --gpus 1 "
               "--accelerator H100 \\\n      --checkpoint-path s3://bucket/ckpt --config "
               "'{\"lr\": 0.1}'")
    p.add_argument("--entrypoint", required=True, help="module:function, called as function(config)")
    p.add_argument("--workers", default="1", help="N, or MIN:MAX for an elastic job (default 1)")
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs per worker (default 1)")
    p.add_argument("--gpus", type=float, default=0.0, help="accelerators per worker (default 0)")
    p.add_argument("--accelerator", default="H100", help="accelerator type when --gpus > 0")
    p.add_argument("--placement", default="PACK", help="PACK, SPREAD, STRICT_PACK, STRICT_SPREAD")
    p.add_argument("--name", default=None, help="job name (names the checkpoint directory)")
    p.add_argument("--config", default="{}", help="JSON object passed to the function")
    p.add_argument("--checkpoint-path", default=None, help="directory or URI for checkpoints")
    p.add_argument("--keep", type=int, default=2, help="committed checkpoints to keep (default 2)")
    p.add_argument("--max-restarts", type=int, default=3, help="restarts after failures (default 3)")
    p.add_argument("--queue", default=None, help="scheduling queue")
    p.add_argument("--address", default=None, help="Ray address (default RAY_ADDRESS or local)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train)


def _parse_workers(text: str) -> int | tuple[int, int]:
    try:
        if ":" in text:
            low, high = text.split(":", 1)
            return int(low), int(high)
        return int(text)
    except ValueError:
        raise errors.ConfigError(f"--workers must be N or MIN:MAX, got {text!r}",
                                 field="workers", value=text) from None


def _load(entrypoint: str) -> Any:
    from ainative import spec

    return spec.import_callable(entrypoint, field="entrypoint")


def cmd_train(args: argparse.Namespace) -> int:
    import ainative as ai

    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise errors.ConfigError(f"--config is not valid JSON: {exc}", field="config") from None
    accelerator = ai.Accelerator(args.accelerator, count=args.gpus) if args.gpus else None
    checkpoint = (ai.CheckpointConfig(path=args.checkpoint_path, keep=args.keep)
                  if args.checkpoint_path else ai.CheckpointConfig(keep=args.keep))
    job = ai.TrainJob(_load(args.entrypoint), workers=_parse_workers(args.workers),
                      resources=ai.Resources(cpus=args.cpus, accelerator=accelerator),
                      placement=args.placement, config=config, name=args.name,
                      checkpoint=checkpoint, failure=ai.FailureConfig(max_restarts=args.max_restarts),
                      queue=args.queue)
    if args.address is not None:
        ai.connect(args.address)
    result = job.run()
    if args.json:
        print(json.dumps({"status": result.status, "metrics": result.metrics,
                          "checkpoint": result.checkpoint, "restarts": result.restarts,
                          "steps": len(result.history)}, default=str))
    else:
        print(f"{job.name}: {result.status}, {len(result.history)} report(s), "
              f"{result.restarts} restart(s), checkpoint {result.checkpoint}, metrics {result.metrics}")
    return 0
