"""Shared fixtures. See tests/support/clusters.py for how clusters are shared between modules."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")
# A Ray call from a background thread after its cluster was shut down must fail, not auto-connect
# to whichever other Ray runs on this machine (seen: a teardown joined another engineer's cluster).
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
# Event logs, ledgers and scheduler state of the tests stay out of the user's ~/.ainative; set
# before any Ray starts so that Ray's workers and actors inherit it.
_OWN_HOME: str | None = None
if "AINATIVE_HOME" not in os.environ:
    _OWN_HOME = os.environ["AINATIVE_HOME"] = tempfile.mkdtemp(prefix="ainative-tests-")
    os.environ["AINATIVE_TESTS_OWN_HOME"] = _OWN_HOME
elif os.environ.get("PYTEST_XDIST_WORKER") and \
        os.environ.get("AINATIVE_TESTS_OWN_HOME") == os.environ["AINATIVE_HOME"]:
    # A pytest-xdist worker inherits the home its controller made: each worker gets a directory
    # of its own in it, so two test processes never share a default ledger or event log.
    os.environ["AINATIVE_HOME"] = os.path.join(os.environ["AINATIVE_HOME"],
                                               os.environ["PYTEST_XDIST_WORKER"])
    os.makedirs(os.environ["AINATIVE_HOME"], exist_ok=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kuberay-live", action="store_true", default=False,
                     help="run tests against a real Kubernetes cluster with the KubeRay operator "
                          "(uses the current kubeconfig context)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--kuberay-live"):
        return
    skip = pytest.mark.skip(reason="opt-in: needs a real KubeRay cluster; run with --kuberay-live")
    for item in items:
        if "kuberay_live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def ray_local():
    """The embedded local Ray: 4 logical CPUs and 4 logical H100 GPUs, shared across modules."""
    from tests.support import clusters

    return clusters.local_ray()


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves a placement group, an actor or held GPUs behind (what was
    already held when it started, e.g. a detached service of an earlier module, does not count)."""
    import ray

    from tests.support import clusters

    before = clusters.held() if ray.is_initialized() else None
    yield
    found = clusters.leaks(before=before)
    assert not any(found.values()), f"left behind: {found}"


@pytest.fixture
def logical_gpu_cluster():
    """Factory: ``logical_gpu_cluster([NodeSpec(gpus=2, accelerator_type="H100"), ...])``."""
    from tests.support import clusters

    made = []

    def make(workers, head_cpus: int = 1):
        cluster = clusters.logical_gpu_cluster(workers, head_cpus=head_cpus)
        made.append(cluster)
        return cluster

    yield make
    for _ in made:
        clusters.shutdown_current()


_SESSIONS: list[pytest.Session] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSIONS.append(session)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End a session that used Ray without the interpreter's teardown, with the session's status.

    Ray 2.60 leaves threads running after ``ray.shutdown()`` (Serve's router event loop, the core
    worker's ``worker.io`` and gRPC client threads: tests/support/clusters.py shuts every cluster
    down, and they are still there), and the interpreter's teardown then frees objects those
    threads may still call into: the slow tier's process crashed with SIGSEGV once in CI after
    all its tests had passed and its summary was printed (stop 25). By now every test has run,
    every cluster is shut down, the summary is printed and the status is final: exiting here
    skips only that teardown. A crash while tests run still kills the run, and prints every
    thread's stack (``PYTHONFAULTHANDLER=1`` in the Makefile)."""
    if not _SESSIONS or "ray" not in sys.modules:
        return
    status = int(_SESSIONS[-1].exitstatus)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        from tests.support import clusters

        clusters.shutdown_current()
    except Exception:
        pass
    if _OWN_HOME and exitstatus == 0:       # kept after a failure: its event logs and ledgers tell why
        shutil.rmtree(_OWN_HOME, ignore_errors=True)
