"""Fixtures of the fault suite: a Ray cluster whose worker nodes sit in network namespaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults import netns


@pytest.fixture
def netns_cluster(request: pytest.FixtureRequest) -> Iterator[netns.NetnsCluster]:
    """A head on the host bridge, this process's driver connected to it; add nodes with
    ``cluster.add_node(...)``. Everything it made is removed afterwards, pass or fail.
    ``NetnsCluster`` arguments (``head_cpus``...) through indirect parametrization:
    ``@pytest.mark.parametrize("netns_cluster", [{"head_cpus": 0}], indirect=True)``."""
    try:
        netns.check_available()
    except netns.Unavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    from tests.support import clusters

    clusters.shutdown_current()  # one driver per process: leave the previous cluster first
    cluster = netns.NetnsCluster(**getattr(request, "param", {}))
    try:
        driver = netns.Driver(cluster)
    except BaseException:
        cluster.shutdown()
        raise
    clusters.adopt("netns", driver)
    try:
        yield cluster
    finally:
        clusters.shutdown_current()
        left = cluster.leftovers()
        assert not left, f"fault harness left behind: {left}"
