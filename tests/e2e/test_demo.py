"""The README's first command, `make demo`, runs `ainative demo`: it must finish and print its summary."""

import subprocess
import sys


def test_demo_runs_and_prints_summary():
    out = subprocess.run([sys.executable, "-m", "ainative.cli.main", "demo"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "GPUs by type: H100" in text
    assert "all_reduce(sum of rank+1) = 3" in text
    assert "demo finished" in text
