"""``ainative.connect``: attach to Ray, or start an embedded local Ray, and describe what is there.

Resolution order for the address:

1. a Ray driver already connected in this process: reuse it (``connect`` is idempotent);
2. an object with an ``address`` attribute (a KubeRay-provisioned cluster) or a string:
   ``"auto"``, ``"ray://host:10001"`` or a GCS ``"host:port"``: join that cluster;
3. ``RAY_ADDRESS`` in the environment (set by ``ray job submit``): join the job's cluster;
4. otherwise start an embedded local Ray (dashboard bound to 127.0.0.1). Ray 2.60 turns token
   auth on for it by default; we leave that as Ray sets it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ainative import errors
from ainative.cluster import state

logger = logging.getLogger(__name__)

TOKEN_SOURCES = ("the RAY_AUTH_TOKEN environment variable",
                 "the file named by RAY_AUTH_TOKEN_PATH",
                 "~/.ray/auth_token")


@dataclasses.dataclass(frozen=True, slots=True)
class AcceleratorSummary:
    """GPUs of one accelerator type over the whole cluster."""

    type: str
    total: float
    free: float
    nodes: int


@dataclasses.dataclass(frozen=True, slots=True)
class NodeSummary:
    node_id: str
    address: str
    accelerator_type: str | None
    gpus_total: float
    gpus_free: float
    cpus_total: float
    cpus_free: float
    memory_bytes: float
    object_store_bytes: float
    is_head: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceSummary:
    """What the cluster has: per node and per accelerator type."""

    nodes: list[NodeSummary]
    accelerators: dict[str, AcceleratorSummary]
    cpus_total: float
    cpus_free: float
    memory_bytes: float
    object_store_bytes: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """A plain-text table for terminals and the CLI."""
        rows = [("NODE", "ROLE", "ACCEL", "GPU free/total", "CPU free/total", "MEMORY", "OBJ STORE")]
        for n in self.nodes:
            rows.append((n.node_id[:12], "head" if n.is_head else "worker", n.accelerator_type or "-",
                         f"{n.gpus_free:g}/{n.gpus_total:g}", f"{n.cpus_free:g}/{n.cpus_total:g}",
                         _gib(n.memory_bytes), _gib(n.object_store_bytes)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.append("")
        lines.append("GPUs by type: " + (", ".join(
            f"{a.type} {a.free:g}/{a.total:g} free on {a.nodes} node(s)"
            for a in self.accelerators.values()) or "none"))
        lines.append(f"CPUs: {self.cpus_free:g}/{self.cpus_total:g} free; memory {_gib(self.memory_bytes)};"
                     f" object store {_gib(self.object_store_bytes)}")
        return "\n".join(lines)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


class Cluster:
    """A connection to a Ray cluster. ``shutdown()`` stops only what ``connect()`` started."""

    def __init__(self, address: str | None, namespace: str, *, owned: bool,
                 dashboard_url: str | None = None) -> None:
        self.address = address
        self.namespace = namespace
        self.owned = owned
        self.dashboard_url = dashboard_url

    def __repr__(self) -> str:
        kind = "embedded" if self.owned else "joined"
        return f"Cluster(address={self.address!r}, namespace={self.namespace!r}, {kind})"

    def resources(self) -> ResourceSummary:
        return summarize(state.nodes())

    def nodes(self) -> list[state.NodeView]:
        return state.nodes()

    def shutdown(self) -> None:
        """Disconnect; stop the embedded Ray only if this connection started it."""
        import ray

        from ainative.cluster import background

        global _CURRENT
        background.stop_all()        # no heartbeat or poll may be mid-call when Ray goes down
        if ray.is_initialized():
            ray.shutdown()
        if _CURRENT is self:
            _CURRENT = None


_CURRENT: Cluster | None = None


def summarize(views: list[state.NodeView]) -> ResourceSummary:
    nodes = [NodeSummary(
        node_id=v.node_id, address=v.address, accelerator_type=v.accelerator_type,
        gpus_total=v.amount("GPU"), gpus_free=v.amount("GPU", free=True),
        cpus_total=v.amount("CPU"), cpus_free=v.amount("CPU", free=True),
        memory_bytes=v.amount("memory"), object_store_bytes=v.amount("object_store_memory"),
        is_head=v.is_head) for v in views]
    accels: dict[str, AcceleratorSummary] = {}
    for n in nodes:
        if n.gpus_total <= 0:
            continue
        kind = n.accelerator_type or "GPU"
        prev = accels.get(kind, AcceleratorSummary(kind, 0.0, 0.0, 0))
        accels[kind] = AcceleratorSummary(kind, prev.total + n.gpus_total, prev.free + n.gpus_free,
                                          prev.nodes + 1)
    return ResourceSummary(
        nodes=nodes, accelerators=dict(sorted(accels.items())),
        cpus_total=sum(n.cpus_total for n in nodes), cpus_free=sum(n.cpus_free for n in nodes),
        memory_bytes=sum(n.memory_bytes for n in nodes),
        object_store_bytes=sum(n.object_store_bytes for n in nodes))


def connect(address: Any = None, *, namespace: str = "ainative", num_cpus: int | None = None,
            num_gpus: int | None = None, accelerator_type: str | None = None,
            resources: Mapping[str, float] | None = None, include_dashboard: bool = True,
            object_store_memory_bytes: int | None = None, runtime_env: dict[str, Any] | None = None,
            log_to_driver: bool = True, connect_timeout_s: float = 5.0) -> Cluster:
    """Connect to Ray and return a :class:`Cluster`.

    ``address=None`` joins ``RAY_ADDRESS`` when set (inside ``ray job submit``), else starts an
    embedded local Ray. ``num_cpus``/``num_gpus``/``accelerator_type``/``resources`` only apply to
    an embedded Ray: ``num_gpus=4, accelerator_type="H100"`` gives four logical H100s on a CPU
    machine. Calling again while connected returns the same connection.
    """
    import ray

    global _CURRENT
    if ray.is_initialized():
        if _CURRENT is None:
            _CURRENT = Cluster(_gcs_address(), ray.get_runtime_context().namespace, owned=False)
        return _CURRENT
    target = _resolve_address(address)
    if target is None:
        _CURRENT = _start_local(namespace, num_cpus=num_cpus, num_gpus=num_gpus,
                                accelerator_type=accelerator_type, resources=resources,
                                include_dashboard=include_dashboard,
                                object_store_memory_bytes=object_store_memory_bytes,
                                runtime_env=runtime_env, log_to_driver=log_to_driver)
    else:
        embedded_only = (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                         ("accelerator_type", accelerator_type), ("resources", resources),
                         ("object_store_memory_bytes", object_store_memory_bytes))
        for name, value in embedded_only:
            if value is not None and address is None:
                # RAY_ADDRESS (e.g. under `ray job submit`): the same script runs unchanged; the
                # cluster's own resources apply.
                logger.info("joining RAY_ADDRESS=%s; ignoring connect(%s=...)", target, name)
            elif value is not None:
                raise errors.ConfigError(
                    f"connect({name}=...) only applies to an embedded local Ray; the cluster at "
                    f"{target!r} already has its resources. Drop {name} or address.", field=name)
        _CURRENT = _join(target, namespace, runtime_env=runtime_env, log_to_driver=log_to_driver,
                         connect_timeout_s=connect_timeout_s)
    return _CURRENT


def _resolve_address(address: Any) -> str | None:
    if address is not None and not isinstance(address, str):
        inner = getattr(address, "address", None)
        if not isinstance(inner, str):
            raise errors.ConfigError(
                f"connect(address=...) takes a string ('auto', 'ray://host:10001', 'host:6379') or a "
                f"cluster object with an .address; got {address!r}", field="address", value=address)
        address = inner
    if address is None:
        return os.environ.get("RAY_ADDRESS") or None
    if not address.strip():
        raise errors.ConfigError("connect(address='') is empty; pass None for an embedded Ray",
                                 field="address", value=address)
    return address.strip()


def _start_local(namespace: str, *, num_cpus: int | None, num_gpus: int | None,
                 accelerator_type: str | None, resources: Mapping[str, float] | None,
                 include_dashboard: bool, object_store_memory_bytes: int | None,
                 runtime_env: dict[str, Any] | None, log_to_driver: bool) -> Cluster:

    from ainative import resources as res

    custom = dict(resources or {})
    if accelerator_type is not None:
        if not num_gpus:
            raise errors.ConfigError(
                "connect(accelerator_type=...) needs num_gpus > 0 (logical GPUs of that type)",
                field="accelerator_type", value=accelerator_type)
        custom[res.Accelerator(accelerator_type).resource_name] = 1.0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray starts its workers at nice 15 so that its own daemons stay responsive; on a machine that
    # other work keeps busy, that leaves every task and actor (Serve's proxy included) a few
    # per cent of a core, and start-up checks time out. A cluster started here is the user's own
    # work: its workers run at the user's priority (RAY_worker_niceness in the environment wins).
    os.environ.setdefault(WORKER_NICENESS_ENV, "0")
    # address="local": always a new embedded Ray, never a stray `ray start` cluster on this host.
    kwargs: dict[str, Any] = dict(address="local", namespace=namespace, num_cpus=num_cpus,
                                  num_gpus=num_gpus,
                                  resources=custom or None, include_dashboard=include_dashboard,
                                  dashboard_host="127.0.0.1", log_to_driver=log_to_driver,
                                  runtime_env=runtime_env,
                                  object_store_memory=object_store_memory_bytes)
    ctx = _init_with_retries({k: v for k, v in kwargs.items() if v is not None})
    logger.info("started an embedded Ray (namespace %s)", namespace)
    url = getattr(ctx, "dashboard_url", None) or None
    return Cluster(_gcs_address(), namespace, owned=True,
                   dashboard_url=f"http://{url}" if url else None)


START_ATTEMPTS = 3
WORKER_NICENESS_ENV = "RAY_worker_niceness"


def _init_with_retries(kwargs: dict[str, Any]) -> Any:
    """``ray.init`` for a new embedded Ray, tried again when its raylet does not register within
    Ray's fixed 30 s (it happens on a saturated machine). Ray leaves the half-started GCS and
    raylet of a failed attempt running; they are our child processes, and are stopped before the
    next try so that they do not load the machine further."""
    import ray

    for attempt in range(1, START_ATTEMPTS + 1):
        before = _children()
        try:
            return ray.init(**kwargs)
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc):
                raise
            stopped = _stop_new_children(before)
            if attempt == START_ATTEMPTS:
                raise errors.ClusterError(
                    f"the embedded Ray did not start: its raylet did not register within Ray's "
                    f"30 s, {START_ATTEMPTS} times (the machine may be saturated; check the load "
                    "and free memory, or start Ray yourself with `ray start --head` and "
                    "connect(address='auto'))") from exc
            logger.warning("the embedded Ray did not come up within 30 s (attempt %d of %d; busy "
                           "machine?); stopped %d half-started process(es) and trying again",
                           attempt, START_ATTEMPTS, stopped)
    raise AssertionError("unreachable")


def _children() -> set[tuple[int, float]]:
    """(pid, start time) of this process's child processes now: what a later call must not stop.
    (A child's start time, not the clock, tells them apart: psutil derives start times from a
    boot time in whole seconds, so they can read up to a second early.)"""
    import psutil

    return {(p.pid, _created(p)) for p in psutil.Process().children(recursive=True)}


def _stop_new_children(before: set[tuple[int, float]]) -> int:
    """Kill this process's Ray child processes (GCS, raylet, agents, workers: their command lines
    name Ray's package) that are not in ``before``: what a failed ray.init left running."""
    import psutil

    victims = [p for p in psutil.Process().children(recursive=True)
               if (p.pid, _created(p)) not in before and _is_ray(p)]
    for proc in victims:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=10)
    return len(victims)


def _is_ray(proc: Any) -> bool:
    try:
        return any("/ray/" in part or part.startswith("ray::") for part in proc.cmdline())
    except Exception:  # gone already, or not ours to read
        return False


def _created(proc: Any) -> float:
    try:
        return float(proc.create_time())
    except Exception:  # gone already
        return 0.0


def _join(address: str, namespace: str, *, runtime_env: dict[str, Any] | None, log_to_driver: bool,
          connect_timeout_s: float) -> Cluster:
    import ray

    _check_reachable(address, connect_timeout_s)
    _enable_token_if_available()
    if "://" not in address and address != "auto":
        _probe_auth(address, connect_timeout_s)
    try:
        ray.init(address=address, namespace=namespace, runtime_env=runtime_env,
                 log_to_driver=log_to_driver)
    except Exception as exc:  # Ray raises several unrelated types here; classify them once.
        raise _classify_join_error(address, exc) from exc
    return Cluster(_gcs_address() or address, namespace, owned=False)


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast on an address nobody listens on: ray.init would retry for a minute."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise errors.ConfigError(
            f"connect(address={address!r}) is not 'auto', 'ray://host:port' or 'host:port'",
            field="address", value=address)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise errors.ClusterConnectionError(
            f"no Ray cluster reachable at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head` or check the address / port (GCS default 6379, client 10001)",
            address=address) from None


def token_available() -> bool:
    """Whether a Ray auth token is where Ray looks for one (TOKEN_SOURCES)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return Path(path).expanduser().is_file()
    return (Path.home() / ".ray" / "auth_token").is_file()


def _enable_token_if_available() -> None:
    """Ray enables token auth for a *local* cluster when a token exists, but not when joining
    one; do the same for joins. A token-mode client also works with a cluster without auth."""
    if os.environ.get("RAY_AUTH_MODE") is None and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"
        try:
            from ray._raylet import Config  # type: ignore[attr-defined]

            Config.initialize("")
        except Exception as exc:  # older Ray without token auth: nothing to refresh
            logger.debug("could not refresh Ray config for token auth: %s", exc)


def _probe_auth(address: str, timeout_s: float) -> None:
    """Ask the GCS one cheap question: an auth failure shows at once here, whereas ray.init
    retries for ~20 s and then reports a generic ConnectionError."""
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]
        from ray.exceptions import AuthenticationError
    except ImportError:  # older Ray: no token auth, nothing to probe
        return
    try:
        GcsClient(address=address).internal_kv_get(b"ainative-probe", None, timeout=timeout_s)
    except AuthenticationError as exc:
        raise _classify_join_error(address, exc) from None
    except Exception as exc:  # anything else is left to ray.init, which reports it in full
        logger.debug("GCS probe of %s: %s", address, exc)


def _classify_join_error(address: str, exc: Exception) -> errors.AinativeError:
    text = f"{type(exc).__name__}: {exc}"
    if "uthenticat" in text or "auth token" in text.lower() or "UNAUTHENTICATED" in text:
        return errors.ClusterAuthError(
            f"the Ray cluster at {address} requires token authentication and no valid token was "
            f"found. ainative (through Ray) looks for it in {', '.join(TOKEN_SOURCES)} "
            f"({Path.home() / '.ray' / 'auth_token'} here); copy the head node's ~/.ray/auth_token "
            "there or set RAY_AUTH_TOKEN. Ray said: " + text[:300], address=address)
    if isinstance(exc, ConnectionError) or "onnect" in text:
        return errors.ClusterConnectionError(
            f"could not join the Ray cluster at {address}: {text[:300]}", address=address)
    return errors.ClusterError(f"could not join the Ray cluster at {address}: {text[:300]}",
                               address=address)


def _gcs_address() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # older/other contexts without gcs_address
        node = getattr(ray.worker.global_worker, "node", None)
        return getattr(node, "gcs_address", None)
