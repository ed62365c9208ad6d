"""Distributed training on gangs: ``TrainJob`` and what ``train_fn`` calls inside workers.

Names load lazily so that ``import ainative.train`` pulls in neither Ray nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "CheckpointConfig": "ainative.train.config:CheckpointConfig",
    "FailureConfig": "ainative.train.config:FailureConfig",
    "TrainContext": "ainative.train._context:TrainContext",
    "TrainHandle": "ainative.train.job:TrainHandle",
    "TrainJob": "ainative.train.job:TrainJob",
    "TrainResult": "ainative.train.result:TrainResult",
    "get_checkpoint": "ainative.train._context:get_checkpoint",
    "get_context": "ainative.train._context:get_context",
    "get_dataset_shard": "ainative.train._context:get_dataset_shard",
    "report": "ainative.train._context:report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'ainative.train' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
