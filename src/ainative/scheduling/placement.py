"""Gangs: all-or-nothing sets of bundles, reserved as one Ray placement group.

``reserve`` checks feasibility against the whole cluster *before* asking Ray (Ray leaves an
impossible placement group PENDING for ever), then waits up to ``timeout_s``. The placement group
is removed on every failure path, before the error is raised.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

from ainative import errors
from ainative import resources as res
from ainative.cluster import state
from ainative.policy import packing

logger = logging.getLogger(__name__)
_NAMES = itertools.count()
DEFAULT_TIMEOUT_S = 60.0


def validate_gang(bundles: Sequence[res.Resources], strategy: str, timeout_s: float | None) -> None:
    """Bad input -> ConfigError, before any Ray resource is taken."""
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise errors.ConfigError(
            f"reserve(bundles=...) needs a non-empty list of ainative.Resources, got {bundles!r}",
            field="bundles", value=bundles)
    for i, b in enumerate(bundles):
        if not isinstance(b, res.Resources):
            raise errors.ConfigError(
                f"reserve(bundles[{i}]) must be ainative.Resources(...), got {b!r}", field="bundles")
    if strategy not in packing.STRATEGIES:
        raise errors.ConfigError(
            f"reserve(strategy={strategy!r}) is not one of {', '.join(packing.STRATEGIES)}",
            field="strategy", value=strategy, allowed=list(packing.STRATEGIES))
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or timeout_s <= 0):
        raise errors.ConfigError(f"reserve(timeout_s={timeout_s!r}) must be > 0 seconds or None",
                                 field="timeout_s", value=timeout_s)


def check_feasible(bundles: Sequence[res.Resources], strategy: str,
                   nodes: list[state.NodeView] | None = None) -> None:
    """Raise InfeasibleError if the gang can never fit on the cluster's alive nodes."""
    views = state.nodes() if nodes is None else nodes
    ray_bundles = [b.to_bundle() for b in bundles]
    totals = {v.node_id: v.total for v in views}
    if packing.assign(ray_bundles, totals, strategy) is None:
        why = packing.shortfall(ray_bundles, totals, strategy)
        raise errors.InfeasibleError(
            f"gang of {len(bundles)} x {_describe(bundles)} ({strategy}) can never fit on this "
            f"cluster: {why}. Ask for fewer or smaller workers, another accelerator type, or add "
            "nodes.", bundles=[b.to_bundle() for b in bundles], strategy=strategy)


def reserve(bundles: Sequence[res.Resources], strategy: str = "PACK", *,
            timeout_s: float | None = DEFAULT_TIMEOUT_S, name: str | None = None) -> Gang:
    """Reserve an all-or-nothing gang; return a :class:`Gang` (also a context manager)."""
    validate_gang(bundles, strategy, timeout_s)
    check_feasible(bundles, strategy)
    from ray.util import placement_group, remove_placement_group

    pg_name = name or f"ainative-gang-{next(_NAMES)}-{int(time.time() * 1000) % 10**8}"
    pg = placement_group([b.to_bundle() for b in bundles], strategy=strategy, name=pg_name)
    try:
        _wait_ready(pg, bundles, strategy, timeout_s)
        gang = Gang(pg, list(bundles), strategy, pg_name)
    except BaseException:
        remove_placement_group(pg)
        raise
    logger.info("reserved gang %s: %d bundle(s) %s", pg_name, len(bundles), strategy)
    return gang


def _wait_ready(pg: Any, bundles: Sequence[res.Resources], strategy: str,
                timeout_s: float | None) -> None:
    import ray
    from ray.exceptions import GetTimeoutError

    try:
        ray.get(pg.ready(), timeout=timeout_s)
    except GetTimeoutError:
        free = state.nodes()
        raise errors.PlacementTimeoutError(
            f"gang of {len(bundles)} x {_describe(bundles)} ({strategy}) did not fit within "
            f"{timeout_s:g} s. Free now: {_free_picture(free)}. Wait longer (timeout_s), free "
            "resources, or ask for less.", timeout_s=timeout_s) from None


def _describe(bundles: Sequence[res.Resources]) -> str:
    kinds = {b.describe() for b in bundles}
    return kinds.pop() if len(kinds) == 1 else "[" + ", ".join(b.describe() for b in bundles) + "]"


def _free_picture(views: list[state.NodeView]) -> str:
    parts = []
    for v in views:
        gpu = f"{v.amount('GPU', free=True):g}/{v.amount('GPU'):g} GPU"
        kind = f" {v.accelerator_type}" if v.accelerator_type else ""
        parts.append(f"node {v.node_id[:8]}: {v.amount('CPU', free=True):g}/{v.amount('CPU'):g} CPU, "
                     f"{gpu}{kind}")
    return "; ".join(parts) or "no alive nodes"


class Gang:
    """A reserved gang: its placement group, bundles, the node of each bundle and their health."""

    def __init__(self, pg: Any, bundles: list[res.Resources], strategy: str, name: str) -> None:
        self.placement_group = pg
        self.bundles = bundles
        self.strategy = strategy
        self.name = name
        self._released = False
        self.initial_nodes: list[str] = self.bundle_nodes()

    def __len__(self) -> int:
        return len(self.bundles)

    def __repr__(self) -> str:
        return f"Gang({self.name!r}, {len(self.bundles)} bundle(s), {self.strategy})"

    def __enter__(self) -> Gang:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def bundle_nodes(self) -> list[str]:
        """The node id of each bundle now (empty string while a bundle is being rescheduled)."""
        from ray.util import placement_group_table

        table = placement_group_table(self.placement_group)
        mapping = table.get("bundles_to_node_id", {}) or {}
        return [str(mapping.get(i, "") or "") for i in range(len(self.bundles))]

    def pg_state(self) -> str:
        from ray.util import placement_group_table

        return str(placement_group_table(self.placement_group).get("state", "UNKNOWN"))

    def dead_bundles(self) -> list[int]:
        """Indexes of bundles whose node (as reserved) has died since."""
        alive = state.alive_node_ids()
        return [i for i, n in enumerate(self.initial_nodes) if n not in alive]

    def is_healthy(self) -> bool:
        return not self._released and not self.dead_bundles()

    def scheduling_strategy(self, bundle_index: int) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(
            placement_group=self.placement_group, placement_group_bundle_index=bundle_index,
            placement_group_capture_child_tasks=False)

    def actor_options(self, bundle_index: int) -> dict[str, Any]:
        """Options placing an actor into bundle ``bundle_index`` with that bundle's resources."""
        opts = self.bundles[bundle_index].to_ray_options()
        opts["scheduling_strategy"] = self.scheduling_strategy(bundle_index)
        return opts

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Remove the placement group (idempotent)."""
        if self._released:
            return
        self._released = True
        from ray.util import remove_placement_group

        try:
            remove_placement_group(self.placement_group)
        except Exception as exc:  # a dead GCS connection at shutdown: nothing left to release
            logger.warning("could not remove placement group %s: %s", self.name, exc)
