"""Every script in examples/ runs as `python examples/X.py` and under
`ray job submit --working-dir . -- python examples/X.py` against a `ray start --head` cluster with
token auth on (its token in the head's HOME; the client finds it there).

The direct runs go on in a background thread, one example at a time and in the reverse order,
while the `ray job submit` runs go on in the foreground: each stream mostly waits on its own Ray
cluster (start-up, training steps, a budget running out), so the module takes about the longer
stream's time instead of both. Each run is still a process of its own with its own Ray; the
direct test reports its example's run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
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


class DirectRuns:
    """``python examples/X.py`` for each example selected, one after another, in a thread; a
    run's Future holds its ``CompletedProcess`` (or the exception, e.g. its timeout)."""

    def __init__(self, examples: list[str], home: Path) -> None:
        self.results: dict[str, Future] = {name: Future() for name in examples}
        self._home, self._stop, self._proc = home, threading.Event(), None
        self._thread = threading.Thread(target=self._run, args=(list(reversed(examples)),),
                                        name="direct-examples", daemon=True)
        self._thread.start()

    def _run(self, order: list[str]) -> None:
        for name in order:
            fut = self.results[name]
            if self._stop.is_set() or not fut.set_running_or_notify_cancel():
                continue
            try:
                home = self._home / name.removesuffix(".py")
                home.mkdir()
                self._proc = subprocess.Popen([sys.executable, f"examples/{name}"], cwd=ROOT, text=True,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              env=_env(AINATIVE_HOME=str(home)))
                try:
                    out, err = self._proc.communicate(timeout=TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    out, err = self._proc.communicate()
                    raise TimeoutError(f"{name} ran over {TIMEOUT_S} s:\n{out[-2000:]}\n{err[-3000:]}")
                fut.set_result(subprocess.CompletedProcess(self._proc.args, self._proc.returncode, out, err))
            except BaseException as exc:   # noqa: BLE001 - handed to the test that reads it
                fut.set_exception(exc)

    def close(self) -> None:
        """Stop: the run in progress is killed, the rest are not started."""
        self._stop.set()
        for fut in self.results.values():
            fut.cancel()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def direct_runs(request, tmp_path_factory):
    """Starts the direct runs of the examples whose direct test is selected."""
    selected = [item.callspec.params["example"] for item in request.session.items
                if item.originalname == "test_example_runs_directly" and item.module is request.module]
    runs = DirectRuns(selected, tmp_path_factory.mktemp("direct-examples"))
    yield runs
    runs.close()


@pytest.fixture(scope="module")
def head(tmp_path_factory, direct_runs):
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


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs_directly(example, direct_runs):
    out = direct_runs.results[example].result(timeout=TIMEOUT_S * len(EXAMPLES))
    assert out.returncode == 0, f"{example} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
