"""Endpoint validation, the batcher and the metrics store, without a Ray cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

import ainative as ai
from ainative.serve import _metrics, _replica


def model_factory():
    return lambda batch: batch


@pytest.mark.parametrize("kwargs, field", [
    (dict(name="bad name"), "name"),
    (dict(name=""), "name"),
    (dict(name="ok", route="no-slash"), "route"),
    (dict(name="ok", resources={"cpus": 1}), "resources"),
    (dict(name="ok", batching={"max_batch_size": 4}), "batching"),
    (dict(name="ok", queue=""), "queue"),
    (dict(name="ok", idempotent="yes"), "idempotent"),
    (dict(name="ok", max_request_bytes=0), "max_request_bytes"),
    (dict(name="ok", request_timeout_s=0), "request_timeout_s"),
    (dict(name="ok", idle=object()), "idle"),
])
def test_bad_endpoint_arguments_raise_config_error(kwargs, field):
    with pytest.raises(ai.ConfigError) as info:
        ai.Endpoint(model_factory, **kwargs)
    assert info.value.field == field


def test_model_must_be_a_factory():
    with pytest.raises(ai.ConfigError, match="factory"):
        ai.Endpoint(42, name="x")  # type: ignore[arg-type]


@dataclasses.dataclass
class IdlePolicy:  # the guardrails engineer's IdlePolicy, duck-typed
    scale_to_zero_after_s: float | None


def test_idle_policy_maps_onto_scale_to_zero():
    ep = ai.Endpoint(model_factory, name="m", idle=IdlePolicy(30.0), queue="team-a")
    assert ep.autoscaling.scale_to_zero_after_s == 30.0
    assert ep.route == "/m" and ep.queue == "team-a"
    assert ai.Endpoint(model_factory, name="m", idle=IdlePolicy(None)).autoscaling == \
        ai.AutoscalingConfig()
    with pytest.raises(ai.ConfigError, match="disagrees"):
        ai.Endpoint(model_factory, name="m", idle=IdlePolicy(5.0),
                    autoscaling=ai.AutoscalingConfig(scale_to_zero_after_s=9.0))


def test_fractional_gpu_resources_become_replica_options():
    res = ai.Resources(cpus=0.5, accelerator=ai.Accelerator("L4", count=0.5))
    ep = ai.Endpoint(model_factory, name="m", resources=res)
    opts = ep.resources.to_ray_options()
    assert opts["num_gpus"] == 0.5 and opts["num_cpus"] == 0.5
    assert "accelerator_type:L4" in opts["resources"]


def _batcher(call, size=4, wait_ms=20.0, slo=None, latency=None):
    cfg = ai.BatchingConfig(max_batch_size=size, max_wait_ms=wait_ms)
    return _replica._Batcher(call, cfg, slo, lambda: latency)


def test_batcher_groups_concurrent_requests_and_keeps_order():
    seen = []

    def call(items):
        seen.append(list(items))
        time.sleep(0.01)
        return [("ok", x * 10) for x in items]

    async def main():
        b = _batcher(call, size=4)
        return await asyncio.gather(*(b.submit(i) for i in range(10))), b

    results, b = asyncio.run(main())
    assert results == [("ok", i * 10) for i in range(10)]
    assert [len(s) for s in seen] == [4, 4, 2]
    assert b.histogram == {4: 2, 2: 1}


def test_batcher_stops_waiting_when_latency_hits_the_slo():
    def call(items):
        return [("ok", x) for x in items]

    async def one(latency):
        b = _batcher(call, size=64, wait_ms=300.0, slo=100.0, latency=latency)
        t = time.monotonic()
        await b.submit(1)
        return time.monotonic() - t

    assert asyncio.run(one(10.0)) >= 0.25       # far below the SLO: waits to fill
    assert asyncio.run(one(120.0)) < 0.1        # above the SLO: no wait at all


def test_bad_request_in_a_batch_fails_alone():
    class Replica(_replica.ModelReplica):
        def __init__(self):  # only what _run_batch needs
            self._batched = True
            self._model = lambda items: [1 / x for x in items]
            self._ray_metrics = type("M", (), {"batch": lambda self, n: None})()

    results = Replica()._run_batch([1, 0, 4])
    assert results[0] == ("ok", 1.0) and results[2] == ("ok", 0.25)
    assert results[1][0] == "error" and "ZeroDivisionError" in results[1][1]

    r = Replica()
    r._model = lambda items: [int(x) for x in items]
    assert r._run_batch(["3", "x"])[1] == ("reject", "ValueError: invalid literal for int() with "
                                                    "base 10: 'x'")


def test_metrics_store_summary():
    store = _metrics.MetricsStore("m")
    now = time.time()
    store.report("a", {"started_at": now - 10, "ready_at": now - 9, "now": now,
                       "latencies": [(now, float(ms)) for ms in range(1, 101)],
                       "batch_sizes": {1: 3, 4: 2}, "completed": 100, "failed": 1, "queue": 2,
                       "ongoing": 3, "cold_starts": [1.5]})
    store.report("b", {"started_at": now - 4, "ready_at": now - 3, "now": now - 1,
                       "latencies": [], "batch_sizes": {4: 1}, "completed": 0, "failed": 0,
                       "queue": 1, "ongoing": 1, "cold_starts": []})
    out = store.summary(window_s=10.0)
    assert out["p50_ms"] == 50 and out["p99_ms"] == 99
    assert out["batch_sizes"] == {1: 3, 4: 3}
    assert out["replica_seconds"] == pytest.approx(13.0, abs=0.01)
    assert out["queue_length"] == 3 and out["requests_total"] == 100
    assert out["cold_starts_s"] == [1.5]


class _FakeModel:
    """Stands in for the model DeploymentHandle: fails ``deaths`` times, then answers."""

    def __init__(self, deaths):
        self.deaths, self.calls = deaths, 0

    def remote(self, payload, t_arrival):
        self.calls += 1

        async def answer():
            if self.calls <= self.deaths:
                from ray.exceptions import ActorDiedError

                raise ActorDiedError()
            return ("ok", payload)
        return answer()


def make_ingress(model, idempotent=True, max_bytes=64):
    from ainative.serve import _ingress

    ing = _ingress.Ingress.__new__(_ingress.Ingress)
    ing._model, ing._idempotent, ing._max_bytes, ing._timeout_s = model, idempotent, max_bytes, 5
    ing._counters, ing._last_push = {"retries": 0, "http_4xx": 0, "http_5xx": 0}, float("inf")
    return ing


def test_ingress_retries_once_when_idempotent_else_503():
    from ainative.serve import _ingress

    ing = make_ingress(_FakeModel(deaths=1))
    assert asyncio.run(ing._predict(7)) == ("ok", 7) and ing._counters["retries"] == 1
    ing = make_ingress(_FakeModel(deaths=2))
    status, reason = asyncio.run(ing._predict(7))
    assert _ingress.HTTP_STATUS[status] == 503 and "died" in reason
    ing = make_ingress(_FakeModel(deaths=1), idempotent=False)
    status, reason = asyncio.run(ing._predict(7))
    assert status == "unavailable" and "idempotent=False" in reason


class _Request:
    def __init__(self, body, method="POST", declared=None):
        self.method, self._body = method, body
        self.headers = {} if declared is None else {"content-length": str(declared)}

    async def body(self):
        return self._body


def test_ingress_http_checks_before_the_model():
    model = _FakeModel(deaths=0)
    ing = make_ingress(model, max_bytes=16)
    assert asyncio.run(ing._http(_Request(b"[1, 2]"))) == ("ok", [1, 2])
    assert asyncio.run(ing._http(_Request(b"1", declared=10_000)))[0] == "too_large"
    assert asyncio.run(ing._http(_Request(b"1" * 17)))[0] == "too_large"
    assert asyncio.run(ing._http(_Request(b"{nope")))[0] == "reject"
    assert asyncio.run(ing._http(_Request(b"", method="GET")))[0] == "reject"
    assert model.calls == 1  # only the good request reached the model
