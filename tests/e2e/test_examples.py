"""Every script in examples/ runs as `python examples/X.py` and under
`ray job submit --working-dir . -- python examples/X.py` against a `ray start --head` cluster with
token auth on (its token in the head's HOME; the client finds it there)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ray_head

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
RAY = str(Path(sys.executable).parent / "ray")
TIMEOUT_S = 240

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", TQDM_DISABLE="1",
               AINATIVE_HOME=str(extra.pop("AINATIVE_HOME", ROOT / ".pytest_cache" / "ainative")))
    env.update(extra)
    return env


def test_examples_exist():
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs_directly(example, tmp_path):
    out = subprocess.run([sys.executable, f"examples/{example}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=TIMEOUT_S, env=_env(AINATIVE_HOME=str(tmp_path)))
    assert out.returncode == 0, f"{example} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    from tests.support import clusters

    clusters.shutdown_current()  # one Ray per test process; the jobs run in the head's cluster
    h = ray_head.start_head(tmp_path_factory.mktemp("jobs-head"), token=True, num_cpus=4, num_gpus=4,
                            resources='{"accelerator_type:H100": 1}', dashboard=True)
    yield h
    h.stop()


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs_under_ray_job_submit(example, head):
    env = head.env(with_token=True, RAY_AUTH_MODE="token")
    for _attempt in range(3):  # the head's job agent registers a few seconds after the dashboard
        out = subprocess.run([RAY, "job", "submit", "--address", head.dashboard_url, "--working-dir", ".",
                              "--", "python", f"examples/{example}"], cwd=ROOT, capture_output=True,
                             text=True, timeout=TIMEOUT_S, env=env)
        if "No available agent" not in out.stderr:
            break
        time.sleep(3)
    assert out.returncode == 0, f"{example} under ray job submit:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}"
    assert "succeeded" in out.stdout + out.stderr
