"""The progress display of a blocking ``TrainJob.run()``: a text bar in a terminal, a widget in a
notebook (both through ``tqdm.auto``), nothing when output is not interactive."""

from __future__ import annotations

import os
import sys
from typing import Any


def interactive() -> bool:
    if os.environ.get("TQDM_DISABLE") or os.environ.get("AINATIVE_NO_PROGRESS"):
        return False
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Shows step, world size, restarts and the latest metrics; ``enabled=None`` auto-detects."""

    def __init__(self, job_name: str, enabled: bool | None = None) -> None:
        self._bar: Any = None
        self._name, self._enabled = job_name, enabled
        if enabled is False or (enabled is None and not interactive()):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(desc=job_name, unit="step", dynamic_ncols=True, leave=True)

    def update(self, controller: Any) -> None:
        bar = self._bar
        if bar is None:
            return
        if controller.step > bar.n:
            bar.update(controller.step - bar.n)
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v)
                 for k, v in list(controller.metrics.items())[:4]}
        bar.set_postfix(state=controller.state.value, workers=controller.world_size,
                        restarts=controller.restarts, **shown, refresh=True)

    def pending(self, why: str) -> None:
        """The job waits for admission: ``pending: <why>`` on the bar, else one line on stderr (at
        once and on every change; admission calls this only when the reason changes)."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"pending: {why}", refresh=True)
        elif self._enabled is not False:
            print(f"[ainative] {self._name} pending: {why}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
