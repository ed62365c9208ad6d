"""Importable stand-ins shipped inside RayJobs by the tests (pods import them by reference)."""

from __future__ import annotations


def train_loop(config: dict | None = None) -> None:
    """A train function; the real ai.TrainJob only needs it to be importable here."""


class LookAlikeJob:
    """Has what the entrypoint uses of an ainative.TrainJob: name, train_fn, run()."""

    def __init__(self, name: str, marker: str) -> None:
        self.name, self.marker, self.train_fn = name, marker, train_loop

    def run(self) -> str:
        print(f"ran {self.marker}")
        return "TrainResult(ok)"


def doubler():
    """A model factory imported by path in Serve (the RayService builder): doubles a batch."""
    return lambda batch: [x * 2 for x in batch]
