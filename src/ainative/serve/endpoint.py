"""``ai.Endpoint(...).deploy()`` -> :class:`EndpointHandle`: an inference endpoint on Ray Serve.

Everything the user passes is validated here, before Ray or Serve is touched; the Serve-facing
parts live in ``_runtime`` (control plane), ``_edge`` (HTTP checks and answers), ``_ingress``
(the edge as its own deployment, with retries), ``_fastpath`` (the edge in the replica: one hop),
``_replica`` (model and batching), ``_autoscale`` (policy adapter), ``_metrics`` (per-endpoint
metrics store) and ``_capacity`` (the leases behind the replicas when a scheduler or cost guard
admits work).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from ainative import config as cfg
from ainative import errors
from ainative.policy.autoscaling import AutoscalingConfig
from ainative.policy.batching import BatchingConfig
from ainative.policy.pricing import Budget
from ainative.resources import Resources
from ainative.serve.auth import TokenAuth

MAX_REQUEST_TIMEOUT_S = 86_400.0  # a request that may take longer than a day is a batch job

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ROUTE = re.compile(r"^/[A-Za-z0-9_./-]*$")


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointMetrics:
    """A snapshot of one endpoint over the last ``window_s`` seconds (latencies at the replica,
    from the ingress receiving a request to its result)."""

    qps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    queue_length: int
    replicas_running: int
    replicas_starting: int
    batch_sizes: dict[int, int]
    replica_seconds: float
    requests_total: int
    failed_total: int
    retries: int
    cold_starts_s: list[float]
    model_load_s: list[float]
    window_s: float
    shed_total: int = 0
    """Requests answered 503 at the edge by ``AutoscalingConfig(shed_over_slo=True)`` (not
    failures: the endpoint refused work it could not finish within the SLO)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Endpoint:
    """An inference endpoint declared by its model, resources and service level.

    ``fast_path=True`` serves with one hop: Serve's HTTP proxy calls the model replica directly,
    and the replica makes the ingress's checks and answers itself (405, 401, 413, 408, 400, shed
    503 with Retry-After, 504, 500 with an error id, the arrival count the autoscaler reads), the
    same code and the same answers as the ingress. It saves a proxy-to-replica hop a request (for
    a sub-millisecond model, most of its latency). What only the ingress gives is then lost: a
    request in flight on a replica that dies is not retried (``idempotent`` has no effect; the
    client sees Serve's own 500 or a dropped connection and must retry itself), and requests Serve's
    proxy holds back while every replica is at ``max_ongoing_requests`` are neither counted as
    arrivals nor shed until a replica takes them. Off by default (never chosen automatically: a
    model's service time is unknown until its replicas run, and switching paths redeploys the
    application). See docs/serving.md, "One hop for small models".

    ``expected_duration_s`` is how long the endpoint is meant to serve (an event, a launch day;
    None: no end). Under a ``Budget(action="min_replicas")``, its own or its queue's, the spend of
    its ``min_replicas`` until then is kept back: replicas above them (and the queue's other
    jobs) stop early enough that the ``min_replicas`` fit in the budget to the end, and they stop
    at the cap itself. Without it a lifetime ``min_replicas`` budget has nothing to keep back, and
    the ``min_replicas`` serve on past the cap (flagged once). See docs/guardrails.md.
    """

    def __init__(self, model: Callable[[], Any], *, name: str, route: str | None = None,
                 resources: Resources | None = None, batching: BatchingConfig | None = None,
                 autoscaling: AutoscalingConfig | None = None, queue: str | None = None,
                 idle: Any = None, idempotent: bool = True, max_request_bytes: int = 1 << 20,
                 request_timeout_s: float = 60.0, auth: TokenAuth | None = None,
                 budget: Budget | None = None, fast_path: bool = False,
                 expected_duration_s: float | None = None) -> None:
        _check_model(model)
        if not isinstance(name, str) or not _NAME.match(name):
            raise errors.ConfigError(
                f"Endpoint.name must be 1-63 letters, digits, '_', '.' or '-', got {name!r}",
                field="name", value=name)
        route = route if route is not None else f"/{name}"
        if not isinstance(route, str) or not _ROUTE.match(route):
            raise errors.ConfigError(
                f"Endpoint.route must start with '/' and use URL path characters, got {route!r}",
                field="route", value=route)
        _check_type("resources", resources, Resources, "ainative.Resources(cpus=1)")
        _check_type("batching", batching, BatchingConfig, "ainative.BatchingConfig()")
        _check_type("autoscaling", autoscaling, AutoscalingConfig, "ainative.AutoscalingConfig()")
        if queue is not None and (not isinstance(queue, str) or not queue.strip()):
            raise errors.ConfigError(f"Endpoint.queue must be a non-empty string or None, got "
                                     f"{queue!r}", field="queue", value=queue)
        if not isinstance(idempotent, bool):
            raise errors.ConfigError(f"Endpoint.idempotent must be True or False, got "
                                     f"{idempotent!r}", field="idempotent", value=idempotent)
        if isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int) or \
                not 1 <= max_request_bytes <= 1 << 30:
            raise errors.ConfigError(f"Endpoint.max_request_bytes must be an integer in [1, 2**30 "
                                     f"(1 GiB)], got {max_request_bytes!r}",
                                     field="max_request_bytes", value=max_request_bytes)
        if not cfg.is_finite_number(request_timeout_s) or not 0 < request_timeout_s <= 86400:
            raise errors.ConfigError(f"Endpoint.request_timeout_s must be a number in (0, 86400], "
                                     f"got {request_timeout_s!r}", field="request_timeout_s",
                                     value=request_timeout_s)
        _check_type("auth", auth, TokenAuth, "ainative.TokenAuth(secret_env=...)")
        _check_type("budget", budget, Budget, "ainative.Budget(usd=..., action='min_replicas')")
        cfg.require_seconds("Endpoint", "expected_duration_s", expected_duration_s, allow_none=True)
        cfg.require_type("Endpoint", "fast_path", fast_path, bool,
                         example="fast_path=True (one hop, no ingress) or False (the default)")
        self.budget = budget
        self.model = model
        self.name = name
        self.route = route
        self.resources = resources if resources is not None else Resources(cpus=1)
        self.batching = batching
        self.autoscaling = _with_idle(autoscaling or AutoscalingConfig(), idle)
        self.queue = queue
        self.idle = idle
        self.idempotent = idempotent
        self.max_request_bytes = max_request_bytes
        self.request_timeout_s = float(request_timeout_s)
        self.auth = auth
        self.fast_path = fast_path
        self.expected_duration_s = expected_duration_s

    def __repr__(self) -> str:
        return (f"Endpoint(name={self.name!r}, route={self.route!r}, "
                f"resources={self.resources.describe()}, batching={self.batching}, "
                f"autoscaling={self.autoscaling}"
                + (", fast_path=True)" if self.fast_path else ")"))

    def deploy(self, *, timeout_s: float = 120.0) -> EndpointHandle:
        """Start the endpoint and wait until its first replicas have loaded the model.

        Under admission (``scheduling.configure`` or ``cost.enable``) the replicas' accelerators
        are admitted first (``min_replicas`` guaranteed, more as the load asks; see
        docs/serving.md), within ``timeout_s``. Raises ModelLoadError (with the replica's
        traceback) if the model fails to load, InfeasibleError if no node can ever hold a replica,
        UnknownQueueError (a ConfigError) if ``queue`` names no configured queue, AdmissionError
        if not admitted in time; in every case nothing stays deployed or leased.
        """
        from ainative.cluster import local as cluster_local
        from ainative.scheduling import placement, protocol
        from ainative.serve import _capacity, _handles, _runtime

        if self.auth is not None:
            self.auth.digest()  # ConfigError naming the variable, before anything is started
        cluster_local.connect()
        _check_feasible(self)
        placement.check_queue("Endpoint", self.queue)
        self._refuse_existing()
        # the lease before Serve: an endpoint that is not admitted starts nothing (Serve's
        # controller and proxy take seconds of CPU that queued work would wait behind)
        admission = protocol.admission_for(self.queue)
        controller = None
        if not isinstance(admission, protocol.ImmediateAdmission):
            controller = _capacity.CapacityController(self, admission, on_stop=_stopper(self.name))
        started = False
        try:
            capacity = None
            if controller is not None:
                controller.admit_initial(timeout_s)
                capacity = (_capacity.board_name(self.name), controller.cap)
            port = _runtime.ensure_serve()
            self._refuse_existing()     # deployed by another driver while this one was admitted
            started = True
            _handles.forget(self.name)
            store = _runtime.start_store(self.name, self.autoscaling.latency_slo_ms)
            _runtime.run(self, self.model, capacity)
            _runtime.wait_running(self.name, store, timeout_s)
        except BaseException:
            if started:
                _runtime.teardown(self.name)
            if controller is not None:
                controller.close("failed")
            raise
        if controller is not None:
            _CONTROLLERS[self.name] = controller
            controller.start()
        return EndpointHandle(self, f"http://127.0.0.1:{port}{self.route}")

    def _refuse_existing(self) -> None:
        from ainative.serve import _runtime

        if _runtime.app_exists(self.name):
            raise errors.ServeError(
                f"an endpoint named {self.name!r} is already deployed; call its handle's "
                "update() or delete() first, or choose another name", endpoint=self.name)


class EndpointHandle:
    """A deployed endpoint: ``url`` for HTTP JSON, ``predict`` from Python, ``metrics``,
    ``update`` (rolling) and ``delete``."""

    def __init__(self, endpoint: Endpoint, url: str) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.url = url

    def __repr__(self) -> str:
        return f"EndpointHandle(name={self.name!r}, url={self.url!r})"

    def predict(self, x: Any, *, timeout_s: float | None = None) -> Any:
        """One request (a JSON-serialisable value) -> its result; EndpointError on failure.
        Past ``timeout_s`` (default: the endpoint's ``request_timeout_s`` + 5 s) it raises
        ``TimeoutError`` (the builtin, on every Python version) and asks Serve to cancel it."""
        from ainative.serve import _edge, _handles, _runtime

        auth = self.endpoint.auth
        token = auth.token() if auth is not None else None
        _runtime.forget_other_clusters()
        wait = timeout_s if timeout_s is not None else self.endpoint.request_timeout_s + 5.0
        status, value = _handles.call(self.name, "predict", x, token, timeout_s=wait)
        if status != "ok":
            code = _edge.HTTP_STATUS[status]
            raise errors.EndpointError(f"endpoint {self.name!r} answered {code} ({status}): "
                                       f"{value}", status_code=code, status=status, reason=value)
        return value

    def headers(self) -> dict[str, str]:
        """HTTP headers for ``url``: the bearer token when the endpoint has ``auth``, else none."""
        return self.endpoint.auth.header() if self.endpoint.auth is not None else {}

    def metrics(self, window_s: float = 10.0) -> EndpointMetrics:
        """QPS and latency percentiles over the last ``window_s``, queue, replicas, batch sizes,
        replica-seconds and cold starts since deploy."""
        import ray

        from ainative.serve import _runtime

        store = ray.get_actor(_runtime.store_name(self.name), namespace=_runtime.NAMESPACE)
        raw = ray.get(store.summary.remote(window_s))
        states = _runtime.replica_states(self.name)
        return EndpointMetrics(
            qps=raw["qps"], p50_ms=raw["p50_ms"], p95_ms=raw["p95_ms"], p99_ms=raw["p99_ms"],
            queue_length=int(raw["queue_length"]), replicas_running=states.get("RUNNING", 0),
            replicas_starting=states.get("STARTING", 0) + states.get("PENDING_MIGRATION", 0),
            batch_sizes=raw["batch_sizes"], replica_seconds=raw["replica_seconds"],
            requests_total=raw["requests_total"], failed_total=raw["failed_total"],
            retries=int(raw.get("retries", 0)), cold_starts_s=raw["cold_starts_s"],
            model_load_s=raw["model_load_s"], window_s=raw["window_s"],
            shed_total=int(raw.get("shed", 0)))

    def update(self, model: Callable[[], Any], *, timeout_s: float = 120.0) -> None:
        """Roll out a new model: new replicas load it while the old ones finish their requests."""
        import ray

        from ainative.serve import _capacity, _runtime

        _check_model(model)
        store = ray.get_actor(_runtime.store_name(self.name), namespace=_runtime.NAMESPACE)
        known = len(ray.get(store.load_failures.remote()))
        controller = _CONTROLLERS.get(self.name)
        capacity = None if controller is None else (_capacity.board_name(self.name), controller.cap)
        _runtime.run(self.endpoint, model, capacity)
        _runtime.wait_running(self.name, store, timeout_s, since_version=True,
                              known_failures=known)
        self.endpoint.model = model

    def capacity(self) -> dict[str, Any]:
        """Admission's view of this endpoint: replicas admitted, wanted and running, why a
        scale-up waits (or what holds it at min_replicas), and every lease held so far (with
        its accelerators, admitted and released times). Empty without admission."""
        controller = _CONTROLLERS.get(self.name)
        return controller.state() if controller is not None else {}

    def why(self) -> str:
        """Why the endpoint runs fewer replicas than its policy wants ("" when it does not)."""
        return str(self.capacity().get("why", ""))

    def delete(self) -> None:
        """Remove the endpoint and release its leases; returns once none of its replicas is
        left."""
        _delete(self.name, "succeeded")


_CONTROLLERS: dict[str, Any] = {}


def _delete(name: str, outcome: str) -> None:
    from ainative import events
    from ainative.serve import _handles, _runtime

    _handles.forget(name)
    try:
        _runtime.teardown(name)
    finally:
        controller = _CONTROLLERS.pop(name, None)
        if controller is not None:
            controller.close(outcome)
            if outcome != "succeeded":
                events.emit(name, "deleted", reason=outcome)


def _stopper(name: str) -> Callable[[str], None]:
    """What the capacity controller calls when admission stops the whole endpoint."""
    return lambda outcome: _delete(name, outcome)


def _check_model(model: Any) -> None:
    if not callable(model):
        raise errors.ConfigError(
            f"Endpoint model must be a factory (a function or class called once per replica to "
            f"load the model), got {type(model).__name__}", field="model", value=repr(model))


def _check_type(field: str, value: Any, cls: type, example: str) -> None:
    if value is not None and not isinstance(value, cls):
        raise errors.ConfigError(f"Endpoint.{field} must be {example} or None, got "
                                 f"{type(value).__name__}", field=field, value=repr(value))


def _with_idle(config: AutoscalingConfig, idle: Any) -> AutoscalingConfig:
    """Map an IdlePolicy (duck-typed: ``scale_to_zero_after_s``) onto scale to zero."""
    if idle is None:
        return config
    after = getattr(idle, "scale_to_zero_after_s", None)
    if after is None:
        if not hasattr(idle, "scale_to_zero_after_s"):
            raise errors.ConfigError(
                f"Endpoint.idle must be an IdlePolicy with scale_to_zero_after_s, got "
                f"{type(idle).__name__}", field="idle", value=repr(idle))
        return config
    if config.scale_to_zero_after_s is not None and config.scale_to_zero_after_s != after:
        raise errors.ConfigError(
            f"Endpoint.idle.scale_to_zero_after_s={after!r} disagrees with "
            f"autoscaling.scale_to_zero_after_s={config.scale_to_zero_after_s!r}; set one of them",
            field="idle", value=after)
    return dataclasses.replace(config, scale_to_zero_after_s=after)


def _check_feasible(endpoint: Endpoint) -> None:
    """A replica that fits no node would wait for ever in Serve; refuse it before deploying."""
    import ray

    from ainative.resources import bundle_fits

    bundle = endpoint.resources.to_bundle()
    totals = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if not any(bundle_fits(bundle, total) for total in totals):
        raise errors.InfeasibleError(
            f"endpoint {endpoint.name!r}: no node can hold one replica of "
            f"{endpoint.resources.describe()}; node totals: {totals}", endpoint=endpoint.name,
            bundle=bundle)
