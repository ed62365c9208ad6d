"""Endpoint validation, the batcher and the metrics store, without a Ray cluster."""

from __future__ import annotations

import asyncio
import json
import dataclasses
import time
import types

import pytest

import ainative as ai
from ainative import errors
from ainative.serve import _metrics, _replica
from tests.unit import serve_paths


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
    (dict(name="ok", fast_path="yes"), "fast_path"),
    (dict(name="ok", fast_path=1), "fast_path"),
    (dict(name="ok", fast_path=None), "fast_path"),
    (dict(name="ok", expected_duration_s=0), "expected_duration_s"),
    (dict(name="ok", expected_duration_s=float("nan")), "expected_duration_s"),
    (dict(name="ok", expected_duration_s="1h"), "expected_duration_s"),
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


DRAIN = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"


def test_ingress_replicas_drain_2s_unless_the_environment_says_otherwise(monkeypatch):
    from ainative.serve import _runtime

    monkeypatch.delenv(DRAIN, raising=False)
    ep = ai.Endpoint(model_factory, name="m", resources=ai.Resources(cpus=0.5))
    one_hop = _runtime._replica_options(ep, ingress=True)
    assert one_hop["runtime_env"]["env_vars"][DRAIN] == "2" and one_hop["num_cpus"] == 0.5
    assert DRAIN not in _runtime._replica_options(ep).get("runtime_env", {}).get("env_vars", {})
    assert _runtime.ingress_env() == {DRAIN: "2"} and _runtime.controller_env()[DRAIN] == "2"
    monkeypatch.setenv(DRAIN, "30")           # a load balancer on the replicas' own ports
    assert _runtime._replica_options(ep, ingress=True)["runtime_env"]["env_vars"][DRAIN] == "30"
    assert _runtime.controller_env()[DRAIN] == "30"


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


def test_unbatched_calls_run_one_at_a_time_in_order_and_a_caller_may_give_up():
    running, order = [], []

    def call(items):
        running.append(1)
        assert len(running) == 1, "two model calls at once on the one device thread"
        order.append(items[0])
        time.sleep(0.2 if items[0] == "slow" else 0.005)
        running.pop()
        return [("ok", items[0])]

    async def main():
        b = _batcher(call, size=1, wait_ms=0.0)
        assert await b.submit("alone") == ("ok", "alone")     # idle device: the direct path
        burst = await asyncio.gather(*(b.submit(i) for i in range(6)))
        with pytest.raises(asyncio.TimeoutError):              # a caller gives up mid-call
            await asyncio.wait_for(b.submit("slow"), 0.05)
        after = await b.submit("after")                        # waits for the slow call's end
        return burst, after, b.histogram

    burst, after, histogram = asyncio.run(main())
    assert burst == [("ok", i) for i in range(6)] and after == ("ok", "after")
    assert order == ["alone", 0, 1, 2, 3, 4, 5, "slow", "after"]
    assert histogram == {1: 9}


def test_a_model_fast_many_times_then_slow_never_holds_the_event_loop():
    """The loop must stay free while any model call runs, however fast the earlier calls were:
    it answers 504 at the deadline and sheds meanwhile. (Running sub-ms models on the loop
    itself, as Serve's handler does, once measured at parity with Serve's p99 and broke this.)"""
    def call(items):
        if items[0] == "slow":
            time.sleep(0.3)
        return [("ok", items[0])]

    async def main():
        b = _batcher(call, size=1, wait_ms=0.0)
        for i in range(100):                                   # sub-millisecond, many times
            await b.submit(i)
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        tick = asyncio.get_running_loop().create_task(ticker())
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):               # the edge's deadline, on time
            await asyncio.wait_for(b.submit("slow"), 0.1)
        gave_up = time.monotonic() - started
        await asyncio.sleep(0.3)
        tick.cancel()
        return gave_up, ticks

    gave_up, ticks = asyncio.run(main())
    assert gave_up < 0.25, f"the deadline fired after {gave_up:.2f}s: the call held the loop"
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.2, f"the loop stalled {max(gaps):.2f}s during a model call"


def test_a_cancelled_batch_loop_answers_the_batch_it_held():
    def call(items):
        time.sleep(0.2)
        return [("ok", x) for x in items]

    async def main():
        b = _batcher(call, size=4, wait_ms=0.0)
        waiting = [asyncio.ensure_future(b.submit(i)) for i in range(2)]
        await asyncio.sleep(0.05)                               # the batch is on the device
        b._task.cancel()
        return await asyncio.wait_for(asyncio.gather(*waiting), 2.0)

    results = asyncio.run(main())
    assert [r[0] for r in results] == ["error", "error"] and "cancelled" in results[0][1]


def test_the_python_310_deadline_is_a_timeout_at_the_deadline_and_nothing_before():
    from ainative.serve import _edge

    async def main():
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            async with _edge._Within(loop, loop.time() + 0.1):
                await asyncio.sleep(5)
        waited = time.monotonic() - started
        async with _edge._Within(loop, loop.time() + 5):
            await asyncio.sleep(0.01)
        with pytest.raises(asyncio.CancelledError):            # a cancel from elsewhere stays one
            async with _edge._Within(loop, loop.time() + 5):
                asyncio.current_task().cancel()
                await asyncio.sleep(1)
        return waited

    assert 0.09 <= asyncio.run(main()) < 1.0


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

    def remote(self, payload, t_arrival, demand_rps=None):
        self.calls += 1

        async def answer():
            if self.calls <= self.deaths:
                from ray.exceptions import ActorDiedError

                raise ActorDiedError()
            return ("ok", payload)
        return answer()


class _Echo:
    """A model answer (see tests/unit/serve_paths.py): ``("ok", payload)``, or sleeps first when
    the payload is ``{"sleep": seconds}``."""

    def __init__(self):
        self.calls = 0

    async def __call__(self, payload):
        self.calls += 1
        if isinstance(payload, dict) and "sleep" in payload:
            await asyncio.sleep(payload["sleep"])
        return ("ok", payload)


def soon(seconds=5.0):
    return time.monotonic() + seconds


def test_ingress_retries_once_when_idempotent_else_503():
    from ainative.serve import _edge, _ingress

    def make(model, idempotent=True):
        return _ingress.Ingress(model, serve_paths.spec(idempotent=idempotent),
                                store=serve_paths.Store()).edge

    edge = make(_FakeModel(deaths=1))
    assert asyncio.run(edge.admit(7, soon())) == ("ok", 7) and edge.counters["retries"] == 1
    status, reason = asyncio.run(make(_FakeModel(deaths=2)).admit(7, soon()))
    assert _edge.HTTP_STATUS[status] == 503 and "died" in reason
    status, reason = asyncio.run(make(_FakeModel(deaths=1), idempotent=False).admit(7, soon()))
    assert status == "unavailable" and "idempotent=False" in reason


class _Request:
    """A Starlette request stand-in whose body arrives in ``chunks`` (a chunked upload), each
    after ``gap_s``; ``read`` counts the bytes the edge pulled."""

    def __init__(self, body, method="POST", declared=None, chunks=None, gap_s=0.0, headers=None):
        self.method = method
        self._chunks = chunks if chunks is not None else [body]
        self._gap_s = gap_s
        self.read = 0
        self.headers = dict(headers or {})
        if declared is not None:
            self.headers["content-length"] = str(declared)

    async def stream(self):
        for chunk in self._chunks:
            if self._gap_s:
                await asyncio.sleep(self._gap_s)
            self.read += len(chunk)
            yield chunk


paths = pytest.mark.parametrize("path", serve_paths.PATHS)


@paths
def test_http_checks_before_the_model(path):
    model = _Echo()
    edge = serve_paths.front(path, model, max_request_bytes=16).edge
    assert asyncio.run(edge._http(_Request(b"[1, 2]"), soon())) == ("ok", [1, 2])
    assert asyncio.run(edge._http(_Request(b"1", declared=10_000), soon()))[0] == "too_large"
    assert asyncio.run(edge._http(_Request(b"1" * 17), soon()))[0] == "too_large"
    assert asyncio.run(edge._http(_Request(b"{nope"), soon()))[0] == "reject"
    assert asyncio.run(edge._http(_Request(b"1", declared="12abc"), soon()))[0] == "reject"
    assert asyncio.run(edge._http(_Request(b"", method="GET"), soon()))[0] == "method"
    assert model.calls == 1  # only the good request reached the model
    status, reason = asyncio.run(serve_paths.front(path, model, max_request_bytes=4096).edge._http(
        _Request(b"[" * 2048 + b"]" * 2048), soon()))
    assert status == "reject" and "nested too deeply" in reason and model.calls == 1


@paths
def test_the_body_is_streamed_and_reading_stops_past_the_limit(path):
    edge = serve_paths.front(path, _Echo(), max_request_bytes=1000).edge
    request = _Request(None, chunks=[b"1" * 400] * 100)  # 40 kB, chunked, no Content-Length
    assert asyncio.run(edge._http(request, soon()))[0] == "too_large"
    assert request.read == 1200  # stopped at the first chunk past max_request_bytes
    ok = _Request(None, chunks=[b"[1,", b" 2", b"]"])
    assert asyncio.run(edge._http(ok, soon())) == ("ok", [1, 2])


@paths
def test_a_slow_body_gets_408_at_the_deadline(path):
    edge = serve_paths.front(path, _Echo(), max_request_bytes=1000, request_timeout_s=0.3).edge
    slow = _Request(None, chunks=[b"["] + [b"1,"] * 100 + [b"1]"], gap_s=0.05)
    started = time.monotonic()
    status, reason = asyncio.run(edge._http(slow, time.monotonic() + 0.3))
    assert status == "client_timeout" and "request_timeout_s=0.3" in reason
    assert time.monotonic() - started < 2.0


@paths
def test_a_slow_model_gets_504_at_the_deadline_over_http_and_the_handle(path):
    model = _Echo()
    front = serve_paths.front(path, model, request_timeout_s=0.2)
    started = time.monotonic()
    response = asyncio.run(front(_Request(b'{"sleep": 5}')))
    body = json.loads(response.body)
    assert response.status_code == 504 and len(body["error_id"]) == 12
    status, reason = asyncio.run(front.predict({"sleep": 5}))
    assert status == "timeout" and "request_timeout_s=0.2" in reason
    assert time.monotonic() - started < 2.0 and model.calls == 2
    assert front.edge.counters["http_5xx"] == 2


def _answer(edge, status, value):
    response = edge.respond(status, value)
    return response.status_code, json.loads(response.body), dict(response.headers)


@paths
def test_responses_carry_codes_error_ids_and_never_a_traceback(path):
    edge = serve_paths.front(path, _Echo()).edge
    assert _answer(edge, "ok", [1.5])[:2] == (200, {"result": [1.5]})
    code, body, headers = _answer(edge, "method", "use POST")
    assert code == 405 and headers["allow"] == "POST"
    code, body, headers = _answer(edge, "unauthorized", "no")
    assert code == 401 and headers["www-authenticate"].startswith("Bearer")
    for bad in (float("nan"), float("inf"), {1, 2}, object()):
        code, body, headers = _answer(edge, "ok", bad)
        assert code == 500 and len(body["error_id"]) == 12 and headers["x-error-id"] == body["error_id"]
        assert "cannot be encoded as JSON" in body["error"] and "Traceback" not in body["error"]
    code, body, _ = _answer(edge, "error", "the model raised RuntimeError (error id 0123456789ab; x)")
    assert code == 500 and body["error_id"] == "0123456789ab"
    code, body, _ = _answer(edge, "timeout", "slow")
    assert code == 504 and len(body["error_id"]) == 12
    assert edge.counters["http_5xx"] == 6 and edge.counters["http_4xx"] == 2


@paths
def test_the_front_never_answers_with_its_own_traceback(path):
    class Broken:
        method = "POST"
        headers = {}

        def stream(self):
            raise RuntimeError("secret internal state")

    response = asyncio.run(serve_paths.front(path, _Echo())(Broken()))
    body = json.loads(response.body)
    assert response.status_code == 500 and "secret" not in body["error"]
    assert "Traceback" not in body["error"] and len(body["error_id"]) == 12


@paths
def test_the_bearer_token_is_checked_over_http_and_the_handle(path):
    from ainative.serve import auth

    token = "t" * 32
    model = _Echo()
    front = serve_paths.front(path, model, auth_digest=auth.digest_of(token))
    edge = front.edge
    for headers in ({}, {"authorization": "Bearer wrong-token-wrong-token"},
                    {"authorization": token}, {"authorization": f"Basic {token}"}):
        assert asyncio.run(edge._http(_Request(b"1", headers=headers), soon()))[0] == "unauthorized"
    good = _Request(b"1", headers={"authorization": f"Bearer {token}"})
    assert asyncio.run(edge._http(good, soon())) == ("ok", 1)
    assert asyncio.run(front.predict(2))[0] == "unauthorized"
    assert asyncio.run(front.predict(2, "nope"))[0] == "unauthorized"
    assert asyncio.run(front.predict(2, token)) == ("ok", 2)
    assert model.calls == 2


def test_the_one_hop_replica_reports_its_share_of_arrivals_and_the_policy_sums_them():
    from ainative.serve import _autoscale

    front = serve_paths.front("fast", _Echo())
    for i in range(5):
        assert asyncio.run(front.predict(i)) == ("ok", i)
    stats = asyncio.run(front.record_autoscaling_stats())
    assert stats["arrival_share_rps"] == pytest.approx(5 / _edge_window())
    assert stats["arrival_rps"] == 0.0          # nothing relayed: there is no ingress
    ctx = types.SimpleNamespace(
        deployment_name="m", current_num_replicas=3, target_num_replicas=3,
        total_num_requests=0, raw_metrics=None,
        aggregated_metrics={"arrival_share_rps": {"r1": 5.0, "r2": 7.0, "r3": 0.0},
                            "arrival_rps": {"r1": 0.0, "r2": 0.0, "r3": 0.0}})
    assert _autoscale.signals_from_context(ctx, 0.0).arrival_rps == 12.0
    front.edge._last_push = float("-inf")
    front.edge.maybe_push()
    counters, source = front.edge._store.pushed[-1]
    assert source == "replica-r1" and counters["http_4xx"] == 0


def _edge_window():
    from ainative.serve import _edge

    return _edge.RATE_WINDOW_S


def test_the_metrics_store_adds_up_the_counters_of_every_edge():
    store = _metrics.MetricsStore("m")
    store.report_edge({"http_4xx": 2, "shed": 1}, "replica-a")
    store.report_edge({"http_4xx": 3, "shed": 0}, "replica-b")
    store.report_edge({"http_4xx": 4, "shed": 5}, "replica-a")   # cumulative: replaces a's
    summary = store.summary()
    assert summary["http_4xx"] == 7 and summary["shed"] == 5


def test_replica_failure_logs_the_traceback_and_returns_only_an_id(caplog):
    import logging

    from ainative.serve import _replica

    def model(x):
        raise RuntimeError("password=hunter2 in a stack frame")

    replica = _replica.ModelReplica.__new__(_replica.ModelReplica)
    replica._batched, replica._model = False, model
    replica._ray_metrics = type("M", (), {"batch": lambda self, n: None})()
    with caplog.at_level(logging.ERROR, logger="ray.serve"):
        status, message = replica._run_batch([1])[0]
    assert status == "error" and "RuntimeError" in message and "hunter2" not in message
    assert "Traceback" not in message
    error_id = message.split("error id ")[1][:12]
    assert error_id in caplog.text and "hunter2" in caplog.text and "Traceback" in caplog.text
    replica._model = lambda x: (_ for _ in ()).throw(ValueError("bad input"))
    assert replica._run_batch([1])[0] == ("reject", "ValueError: bad input")


def test_token_auth_config():
    import ainative as ai

    for bad in ("", "1ABC", "A B", None, 3, "x" * 200):
        with pytest.raises(errors.ConfigError, match="secret_env"):
            ai.TokenAuth(secret_env=bad)
    with pytest.raises(errors.ConfigError, match="auth"):
        ai.Endpoint(lambda: None, name="e", auth="token")
    for bad in (float("nan"), float("inf"), 0, -1, 10**9, True, "60"):
        with pytest.raises(errors.ConfigError, match="request_timeout_s"):
            ai.Endpoint(lambda: None, name="e", request_timeout_s=bad)


def test_token_auth_reads_the_environment(monkeypatch):
    import ainative as ai

    auth = ai.TokenAuth(secret_env="AINATIVE_TEST_TOKEN")
    monkeypatch.delenv("AINATIVE_TEST_TOKEN", raising=False)
    with pytest.raises(errors.ConfigError, match="AINATIVE_TEST_TOKEN is not set"):
        auth.token()
    with pytest.raises(errors.ConfigError, match="AINATIVE_TEST_TOKEN is not set"):
        ai.Endpoint(lambda: None, name="e", auth=auth).deploy()  # before any Ray is touched
    monkeypatch.setenv("AINATIVE_TEST_TOKEN", "short")
    with pytest.raises(errors.ConfigError, match="at least 16"):
        auth.digest()
    monkeypatch.setenv("AINATIVE_TEST_TOKEN", "s" * 20)
    assert auth.header() == {"Authorization": "Bearer " + "s" * 20}
    assert len(auth.digest()) == 64 and "s" * 20 not in auth.digest()
