"""Gang feasibility and bundle-to-node assignment, pure Python.

``assign(bundles, nodes, strategy)`` answers "can this gang be placed on these nodes, and where?"
for Ray's four placement strategies. It is used twice: against the cluster's *total* resources
(can it ever fit? -> InfeasibleError at once) and against *free* resources (does it fit now?).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

Bundle = Mapping[str, float]
Rank = Callable[[str, Bundle], Any]
"""A placement scorer's key for putting ``need`` on a node (lower is better; None: it does not fit
there, e.g. no single GPU has the fraction free): see ``policy.fragmentation``."""
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
_EPS = 1e-9
_MAX_BACKTRACK_STEPS = 20_000


def fits(bundle: Bundle, capacity: Mapping[str, float]) -> bool:
    return all(capacity.get(k, 0.0) + _EPS >= v for k, v in bundle.items())


def _take(capacity: dict[str, float], bundle: Bundle, sign: float = 1.0) -> None:
    for k, v in bundle.items():
        capacity[k] = capacity.get(k, 0.0) - sign * v


def total(bundles: Sequence[Bundle]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            out[k] = out.get(k, 0.0) + v
    return out


def assign(bundles: Sequence[Bundle], nodes: Mapping[str, Mapping[str, float]],
           strategy: str = "PACK", rank: Rank | None = None) -> list[str] | None:
    """Node id for each bundle, or None when the gang cannot be placed on ``nodes``.

    PACK prefers as few nodes as possible and SPREAD as many, but both accept any placement (as Ray
    does); STRICT_PACK needs one node, STRICT_SPREAD a distinct node per bundle. ``rank`` picks
    among the nodes that can hold a whole gang (default: best fit, the least GPU left).
    """
    if not bundles:
        return []
    if strategy == "STRICT_PACK":
        need = total(bundles)
        best = [n for n, cap in nodes.items() if fits(need, cap)]
        pick = _tightest(best, nodes, need, rank)
        return [pick] * len(bundles) if pick is not None else None
    if strategy == "STRICT_SPREAD":
        return _match_distinct(bundles, nodes)
    if strategy == "PACK":
        need = total(bundles)
        one = [n for n, cap in nodes.items() if fits(need, cap)]
        pick = _tightest(one, nodes, need, rank)
        if pick is not None:
            return [pick] * len(bundles)
    return _bin_pack(bundles, nodes, spread=(strategy == "SPREAD"))


def _tightest(candidates: list[str], nodes: Mapping[str, Mapping[str, float]], need: Bundle,
              rank: Rank | None = None) -> str | None:
    # Default best fit: leave the least of the scarcest thing (GPUs first) behind.
    def leftover(n: str) -> tuple[float, float]:
        cap = nodes[n]
        return (cap.get("GPU", 0.0) - need.get("GPU", 0.0), cap.get("CPU", 0.0) - need.get("CPU", 0.0))
    if rank is None:
        return min(candidates, key=lambda n: (leftover(n), n)) if candidates else None
    keyed = [(k, leftover(n), n) for n in candidates if (k := rank(n, need)) is not None]
    return min(keyed)[2] if keyed else None


def _bin_pack(bundles: Sequence[Bundle], nodes: Mapping[str, Mapping[str, float]], *,
              spread: bool) -> list[str] | None:
    order = sorted(range(len(bundles)), key=lambda i: (-bundles[i].get("GPU", 0.0),
                                                       -bundles[i].get("CPU", 0.0)))
    caps = {n: dict(c) for n, c in nodes.items()}
    names = sorted(caps)
    placed: dict[int, str] = {}
    used: dict[str, int] = {n: 0 for n in names}
    steps = [0]

    def candidates(i: int) -> list[str]:
        ok = [n for n in names if fits(bundles[i], caps[n])]
        if spread:
            ok.sort(key=lambda n: (used[n], n))
        else:
            ok.sort(key=lambda n: (-used[n], caps[n].get("GPU", 0.0), n))
        return ok

    def place(k: int) -> bool:
        if k == len(order):
            return True
        steps[0] += 1
        if steps[0] > _MAX_BACKTRACK_STEPS:
            return False
        i = order[k]
        for n in candidates(i):
            _take(caps[n], bundles[i])
            used[n] += 1
            placed[i] = n
            if place(k + 1):
                return True
            _take(caps[n], bundles[i], -1.0)
            used[n] -= 1
            del placed[i]
        return False

    return [placed[i] for i in range(len(bundles))] if place(0) else None


def _match_distinct(bundles: Sequence[Bundle], nodes: Mapping[str, Mapping[str, float]]) -> list[str] | None:
    """Bipartite matching bundle -> distinct node (augmenting paths)."""
    owner: dict[str, int] = {}
    names = sorted(nodes)

    def augment(i: int, seen: set[str]) -> bool:
        for n in names:
            if n in seen or not fits(bundles[i], nodes[n]):
                continue
            seen.add(n)
            if n not in owner or augment(owner[n], seen):
                owner[n] = i
                return True
        return False

    for i in range(len(bundles)):
        if not augment(i, set()):
            return None
    result = [""] * len(bundles)
    for n, i in owner.items():
        result[i] = n
    return result


def shortfall(bundles: Sequence[Bundle], nodes: Mapping[str, Mapping[str, float]],
              strategy: str) -> str:
    """Why ``assign`` found nothing, in words a user can act on."""
    typed = _typed_gpu_shortfall(bundles, nodes)
    if typed:
        return "not enough GPUs of the requested type (" + "; ".join(typed) + ")"
    need = total(bundles)
    have = total(list(nodes.values()))
    short = [f"{_label(k)}: needs {v:g}, has {have.get(k, 0.0):g}" for k, v in sorted(need.items())
             if have.get(k, 0.0) + _EPS < v]
    if short:
        return "not enough in total (" + "; ".join(short) + ")"
    unfit = [i for i, b in enumerate(bundles) if not any(fits(b, c) for c in nodes.values())]
    if unfit:
        b = bundles[unfit[0]]
        return (f"no single node can hold bundle {unfit[0]} {_describe(b)}; largest node has "
                f"{_describe(_largest(nodes))}")
    if strategy == "STRICT_PACK":
        return (f"STRICT_PACK needs one node with {_describe(need)}; largest node has "
                f"{_describe(_largest(nodes))}")
    if strategy == "STRICT_SPREAD":
        return (f"STRICT_SPREAD needs {len(bundles)} distinct nodes that each fit a bundle; "
                f"the cluster has {len(nodes)} node(s)")
    return "the bundles cannot be packed onto the nodes (resources are scattered)"


def _typed_gpu_shortfall(bundles: Sequence[Bundle],
                         nodes: Mapping[str, Mapping[str, float]]) -> list[str]:
    need: dict[str, float] = {}
    for b in bundles:
        for k in b:
            if k.startswith("accelerator_type:"):
                need[k] = need.get(k, 0.0) + b.get("GPU", 0.0)
    out = []
    for k, gpus in sorted(need.items()):
        have = sum(c.get("GPU", 0.0) for c in nodes.values() if c.get(k, 0.0) > 0)
        if have + _EPS < gpus:
            out.append(f"{k.split(':', 1)[1]}: needs {gpus:g} GPU(s), the cluster has {have:g}")
    return out


def _largest(nodes: Mapping[str, Mapping[str, float]]) -> Mapping[str, float]:
    if not nodes:
        return {}
    return max(nodes.values(), key=lambda c: (c.get("GPU", 0.0), c.get("CPU", 0.0)))


def _label(key: str) -> str:
    return key.split(":", 1)[1] + " (accelerator type)" if key.startswith("accelerator_type:") else key


def _describe(bundle: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{_label(k)}: {v:g}" for k, v in sorted(bundle.items())
                           if not k.startswith("accelerator_type:") or v >= 1) + _types(bundle) + "}"


def _types(bundle: Mapping[str, float]) -> str:
    kinds = [k.split(":", 1)[1] for k in bundle if k.startswith("accelerator_type:")]
    return (", type: " + "/".join(kinds)) if kinds else ""
