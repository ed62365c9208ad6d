"""Prometheus-format metrics through Ray's metrics system, shared by every area.

``counter/gauge/histogram(name, ...)`` return a cached ``ray.util.metrics`` object named
``ainative_<name>`` (Ray exports it as ``ray_ainative_<name>`` on every node's metrics port).
Recording never raises: metrics must not break the work they describe.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)
_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()
DEFAULT_BOUNDARIES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def _active() -> bool:
    # Only where Ray is already connected: never import or start Ray just to record a metric
    # (the simulator and the pure policies share code paths with the live system).
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _get(kind: str, name: str, description: str, tag_keys: Sequence[str],
         boundaries: Sequence[float] | None = None) -> Any:
    full = f"ainative_{name}"
    with _LOCK:
        metric = _CACHE.get(full)
        if metric is None:
            from ray.util import metrics

            if kind == "counter":
                metric = metrics.Counter(full, description=description, tag_keys=tuple(tag_keys))
            elif kind == "gauge":
                metric = metrics.Gauge(full, description=description, tag_keys=tuple(tag_keys))
            else:
                metric = metrics.Histogram(full, description=description,
                                           boundaries=list(boundaries or DEFAULT_BOUNDARIES_MS),
                                           tag_keys=tuple(tag_keys))
            _CACHE[full] = metric
        return metric


def counter(name: str, value: float = 1.0, *, description: str = "", **tags: str) -> None:
    if not _active():
        return
    try:
        _get("counter", name, description, sorted(tags)).inc(value, tags=tags or None)
    except Exception as exc:  # never let a metric break the caller
        logger.debug("metric %s not recorded: %s", name, exc)


def gauge(name: str, value: float, *, description: str = "", **tags: str) -> None:
    if not _active():
        return
    try:
        _get("gauge", name, description, sorted(tags)).set(value, tags=tags or None)
    except Exception as exc:
        logger.debug("metric %s not recorded: %s", name, exc)


def histogram(name: str, value: float, *, description: str = "",
              boundaries: Sequence[float] | None = None, **tags: str) -> None:
    if not _active():
        return
    try:
        _get("histogram", name, description, sorted(tags), boundaries).observe(value, tags=tags or None)
    except Exception as exc:
        logger.debug("metric %s not recorded: %s", name, exc)


def metrics_urls() -> list[str]:
    """The Prometheus endpoint of every alive node (loopback when the node is this machine)."""
    import socket

    import ray

    local_ips = {"127.0.0.1", ray.util.get_node_ip_address()}
    try:
        local_ips.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    urls = []
    for node in ray.nodes():
        if node.get("Alive") and node.get("MetricsExportPort"):
            host = node["NodeManagerAddress"]
            host = "127.0.0.1" if host in local_ips else host
            urls.append(f"http://{host}:{node['MetricsExportPort']}/metrics")
    return urls
