"""Ray plumbing shared by the data plane: cached remote functions, parallelism, progress, errors.

Ray is imported inside functions so that importing ``ainative.data`` stays cheap.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ainative import errors


@functools.cache
def remote(fn: Callable[..., Any], **options: Any) -> Any:
    """``ray.remote(fn).options(...)`` built once per process (re-exporting a function is slow)."""
    import ray

    return ray.remote(fn).options(**options) if options else ray.remote(fn)


def ensure_ray() -> None:
    """Join RAY_ADDRESS or start an embedded Ray when nobody connected yet."""
    import ray

    if not ray.is_initialized():
        from ainative.cluster import local

        local.connect()


def parallelism() -> int:
    """How many data tasks to keep in flight: the cluster's CPUs, capped by this machine's cores
    on a single-node cluster (logical CPUs beyond the real cores only add context switches)."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) <= 1:
        cpus = min(cpus, os.cpu_count() or 1)
    return max(1, cpus)


def single_node() -> bool:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive")) <= 1


def object_store_bytes() -> int:
    import ray

    return int(ray.cluster_resources().get("object_store_memory", 2 * 2**30))


def interactive() -> bool:
    """Show progress in terminals and notebooks only (never in CI logs or ray job logs)."""
    if os.environ.get("TQDM_DISABLE"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) or "ipykernel" in sys.modules


def progress(total: int, desc: str, unit: str = "block") -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not interactive(), leave=False)


def unwrap(exc: BaseException, what: str = "a data task") -> BaseException:
    """The ainative error inside a RayTaskError, so callers see our typed error; any other task
    failure becomes a DataError that keeps Ray's message (it carries the remote traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, errors.AinativeError):
        return cause
    as_inst = getattr(exc, "as_instanceof_cause", None)
    if as_inst is not None:
        inner = as_inst()
        if isinstance(inner, errors.AinativeError):
            return inner
    if isinstance(exc, errors.AinativeError) or not isinstance(exc, Exception):
        return exc
    return errors.DataError(f"{what} failed: {type(exc).__name__}: {exc}", cause=repr(exc)[:2000])


def bounded(submit: Callable[[int], Any], count: int, limit: int,
            on_done: Callable[[int, Any], None] | None = None, bar: Any = None) -> list[Any]:
    """Submit ``submit(i)`` for i in range(count) with at most ``limit`` unfinished at a time.

    ``submit`` returns one ObjectRef (the one whose completion frees a slot). Returns the refs in
    index order. Errors are raised by the caller's ``ray.get``; here we only wait.
    """
    import ray

    refs: list[Any] = [None] * count
    pending: dict[Any, int] = {}
    for i in _indices(count):
        while len(pending) >= limit:
            _drain(pending, on_done, bar, ray.wait(list(pending), num_returns=1)[0])
        refs[i] = submit(i)
        pending[refs[i]] = i
    while pending:
        _drain(pending, on_done, bar, ray.wait(list(pending), num_returns=1)[0])
    return refs


def _indices(count: int) -> Iterator[int]:
    return iter(range(count))


def _drain(pending: dict[Any, int], on_done: Callable[[int, Any], None] | None, bar: Any,
           ready: list[Any]) -> None:
    for ref in ready:
        i = pending.pop(ref)
        if on_done is not None:
            on_done(i, ref)
        if bar is not None:
            bar.update(1)
