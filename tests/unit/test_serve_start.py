"""Serve's start on a saturated node: its controller replaces an HTTP proxy that missed its ready
checks, and serve.start() dies with the first proxy; ensure_serve waits for the replacement.
(No Ray here: Serve's start and status are faked.)"""

from __future__ import annotations

import types

import pytest
import ray
from ray import serve

from ainative import errors
from ainative.serve import _runtime


class _Client:
    http_config = types.SimpleNamespace(port=8123)


@pytest.fixture
def fake_serve(monkeypatch):
    from ray.serve import context

    calls: dict = {"clients": [None], "status": []}
    monkeypatch.setattr(_runtime, "forget_other_clusters", lambda: None)

    def get_client(raise_if_no_controller_running=True):
        return calls["clients"].pop(0) if calls["clients"] else _Client()

    def status():
        states = calls["status"].pop(0) if calls["status"] else {"n1": "HEALTHY"}
        return types.SimpleNamespace(proxies=states)

    monkeypatch.setattr(context, "_get_global_client", get_client)
    monkeypatch.setattr(serve, "status", status)
    monkeypatch.setattr(_runtime.time, "sleep", lambda s: None)
    return calls


class _Died(ray.exceptions.ActorDiedError):
    """An ActorDiedError with the message Ray prints (Ray's own builds it from a protobuf)."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)

    def __str__(self) -> str:
        return str(self.args[0])


def _proxy_killed(**kwargs):
    raise _Died("The actor died unexpectedly before finishing this task.\n\tclass_name: ProxyActor")


def test_a_replaced_proxy_is_waited_for(fake_serve, monkeypatch):
    fake_serve["status"] = [{"n1": "STARTING"}, {"n1": "UNHEALTHY"}, {"n1": "HEALTHY"}]
    monkeypatch.setattr(serve, "start", _proxy_killed)
    assert _runtime.ensure_serve() == 8123
    assert fake_serve["status"] == []            # it waited through STARTING and UNHEALTHY


def test_a_proxy_that_never_comes_up_is_a_serve_error(fake_serve, monkeypatch):
    monkeypatch.setattr(serve, "start", _proxy_killed)
    fake_serve["status"] = [{"n1": "STARTING"}] * 10_000
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(_runtime.time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(errors.ServeError, match="RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"):
        _runtime.ensure_serve()


def test_another_actor_dying_is_not_waited_out(fake_serve, monkeypatch):
    def controller_died(**kwargs):
        raise _Died("class_name: ServeController")

    monkeypatch.setattr(serve, "start", controller_died)
    with pytest.raises(ray.exceptions.ActorDiedError):
        _runtime.ensure_serve()


def test_the_controller_gets_tolerant_proxy_checks_unless_the_user_set_them(monkeypatch):
    seen: dict = {}

    def start(**kwargs):
        seen.update(kwargs)

    from ray.serve import context

    clients = [None, _Client()]
    monkeypatch.setattr(_runtime, "forget_other_clusters", lambda: None)
    monkeypatch.setattr(context, "_get_global_client",
                        lambda raise_if_no_controller_running=True: clients.pop(0))
    monkeypatch.setattr(serve, "start", start)
    monkeypatch.setenv("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "45")
    monkeypatch.delenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", raising=False)
    monkeypatch.delenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", raising=False)
    _runtime.ensure_serve()
    env = seen["controller_options"]["runtime_env"]["env_vars"]
    assert env == {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
                   "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "45",
                   "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}
