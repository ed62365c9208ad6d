"""Shared fixtures. See tests/support/clusters.py for how clusters are shared between modules."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TQDM_DISABLE", "1")
# A Ray call from a background thread after its cluster was shut down must fail, not auto-connect
# to whichever other Ray runs on this machine (seen: a teardown joined another engineer's cluster).
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
# Event logs, ledgers and scheduler state of the tests stay out of the user's ~/.ainative; set
# before any Ray starts so that Ray's workers and actors inherit it.
os.environ.setdefault("AINATIVE_HOME", tempfile.mkdtemp(prefix="ainative-tests-"))


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        from tests.support import clusters

        clusters.shutdown_current()
    except Exception:
        pass
