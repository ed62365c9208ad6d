"""Fixtures of the KubeRay tests: one fake API server + scripted operator per module."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.kuberay.fake_apiserver import FakeApiServer
from tests.kuberay.fake_operator import FakeOperator

_names = itertools.count()


@pytest.fixture(scope="module")
def apiserver() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    server.operator = FakeOperator(server.store, step_s=0.05)  # type: ignore[attr-defined]
    yield server
    server.operator.stop()  # type: ignore[attr-defined]
    server.stop()


@pytest.fixture
def operator(apiserver: FakeApiServer) -> FakeOperator:
    return apiserver.operator  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def kube(apiserver: FakeApiServer):  # -> KubeRayClient
    from ainative.cluster.kuberay.client import KubeRayClient

    client = KubeRayClient(apiserver.api_client())
    yield client
    client.api_client.close()


@pytest.fixture
def unique_name() -> str:
    """A fresh object name per test, so tests sharing one server never collide."""
    return f"t{next(_names)}-c"
