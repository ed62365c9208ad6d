"""The README's first command, `make demo`, runs `ainative demo`: every step runs and the summary
is printed; a trimmed size keeps CI fast while keeping each step."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_every_step_and_prints_summary(tmp_path):
    env = {**os.environ, "AINATIVE_HOME": str(tmp_path), "AINATIVE_DEMO_SCALE": "small"}
    out = subprocess.run([sys.executable, "-m", "ainative.cli.main", "demo"], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for step in ("== 1. cluster", "== 2. a team queue", "== 3. generate and shuffle",
                 "== 4. train", "killed worker process", "== 5. deploy", "== 6. a bounded burst",
                 "== 7. cost report", "== summary =="):
        assert step in text, f"missing {step!r} in:\n{text[-3000:]}"
    assert "succeeded after 1 restart(s)" in text
    assert "everything released" in text
