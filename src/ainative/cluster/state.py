"""A read-only view of the Ray cluster's nodes and resources.

The one place that reads Ray's per-node resource tables, so that placement feasibility, the
resource summary and the scheduler all see the same picture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ainative import resources as res


@dataclasses.dataclass(frozen=True, slots=True)
class NodeView:
    """One alive Ray node: its id, address, accelerator type and total/free resources."""

    node_id: str
    address: str
    accelerator_type: str | None
    total: Mapping[str, float]
    free: Mapping[str, float]
    is_head: bool = False

    def amount(self, key: str, *, free: bool = False) -> float:
        return float((self.free if free else self.total).get(key, 0.0))


def nodes() -> list[NodeView]:
    """Alive nodes with total and free resources (needs a connected Ray driver)."""
    import ray
    from ray._private import state as ray_state

    total = ray_state.total_resources_per_node()
    free = ray_state.available_resources_per_node()
    views = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        node_id = node["NodeID"]
        node_total = _public(dict(total.get(node_id, node.get("Resources", {}))))
        views.append(NodeView(
            node_id=node_id,
            address=node.get("NodeManagerAddress", ""),
            accelerator_type=res.accelerator_type_of(node_total),
            total=node_total,
            free=_public(dict(free.get(node_id, {}))),
            is_head="node:__internal_head__" in node.get("Resources", {}),
        ))
    views.sort(key=lambda v: (not v.is_head, v.node_id))
    return views


def alive_node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def _public(resources: Mapping[str, Any]) -> dict[str, float]:
    # Ray adds node:<ip> and bundle-group resources; they are bookkeeping, not capacity.
    return {k: float(v) for k, v in resources.items()
            if not k.startswith("node:") and "_group_" not in k}
