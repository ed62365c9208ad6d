"""Run every benchmark in this folder, one after another (they must not overlap on a 2-core
machine), then print where the JSON results are. `make bench` calls this; pass --quick through."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["train_overhead.py", "shuffle.py", "serve_autoscaling.py", "scheduling.py", "guardrails.py",
         "control_plane.py"]


def main(argv: list[str]) -> int:
    scripts = [HERE / n for n in ORDER if (HERE / n).exists()]
    scripts += sorted(p for p in HERE.glob("*.py") if p.name not in ORDER and p.name != Path(__file__).name)
    failed = []
    for script in scripts:
        t0 = time.monotonic()
        print(f"== {script.name} {' '.join(argv)}", flush=True)
        rc = subprocess.call([sys.executable, str(script), *argv], cwd=HERE.parent)
        print(f"== {script.name}: exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script.name)
    print(f"results in {HERE / 'results'}; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
