"""Importable entry points for spec tests (module:function strings)."""


def train_fn(config):
    return None


def model_factory():
    return lambda batch: batch
