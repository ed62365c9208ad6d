"""Python calls into an endpoint, made on an event loop that ainative owns.

Serve's handles route requests either on a loop of Serve's own (its default) or, with
``RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0`` (part of ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``), on the
loop of whoever first uses the handle, and then refuse every caller that has no running loop.
``EndpointHandle.predict`` is a plain blocking call that scripts, ``ray job submit`` drivers and
notebooks (whose loop is running but must not be re-entered) all use, so every call here runs as
a coroutine on one daemon loop thread: the router lives on that loop in either mode, and the
caller blocks on a concurrent future. One Serve handle per (cluster, endpoint) is kept for that
loop and dropped when the endpoint is deployed or deleted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

_LOCK = threading.Lock()
_LOOP: list[asyncio.AbstractEventLoop] = []
_HANDLES: dict[tuple[str, str], Any] = {}      # touched on the loop thread only


def _loop() -> asyncio.AbstractEventLoop:
    with _LOCK:
        if not _LOOP or _LOOP[0].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="ainative-endpoint-calls",
                             daemon=True).start()
            _LOOP[:] = [loop]
        return _LOOP[0]


# Looking the app up (a blocking call to Serve's controller, once per endpoint) may take this
# long on top of the request's own timeout before the caller gives up on the loop.
LOOKUP_GRACE_S = 60.0


def call(name: str, method: str, *args: Any, timeout_s: float) -> Any:
    """``await handle.<method>.remote(*args)`` on the endpoint's app, from any thread; raises
    TimeoutError after ``timeout_s`` and asks Serve to cancel the request."""
    import ray

    cluster = ray.get_runtime_context().gcs_address

    async def ask() -> Any:
        from ray import serve

        key = (cluster, name)
        handle = _HANDLES.get(key)
        if handle is None:
            handle = _HANDLES[key] = serve.get_app_handle(name)
        response = getattr(handle, method).remote(*args)
        try:
            return await asyncio.wait_for(_result(response), timeout_s)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            response.cancel()
            raise TimeoutError(f"endpoint {name!r} did not answer within {timeout_s} s") from None

    future = asyncio.run_coroutine_threadsafe(ask(), _loop())
    try:
        return future.result(timeout=timeout_s + LOOKUP_GRACE_S)
    except concurrent.futures.TimeoutError:  # likewise (and since 3.11 also ask()'s own)
        if future.done():  # ask() ended (its own TimeoutError included) as we gave up
            return future.result()
        future.cancel()  # the loop itself is stuck (the lookup, or another call)
        raise TimeoutError(f"endpoint {name!r}: no answer from the call loop within "
                           f"{timeout_s + LOOKUP_GRACE_S} s") from None


async def _result(response: Any) -> Any:
    return await response


def forget(name: str) -> None:
    """Drop the cached handles of ``name`` (its deployments may change on the next deploy).
    Runs on the loop, before any call submitted after it (the loop takes callbacks in order)."""
    with _LOCK:
        loop = _LOOP[0] if _LOOP and not _LOOP[0].is_closed() else None
    if loop is None:
        return

    def drop() -> None:
        for key in [key for key in _HANDLES if key[1] == name]:
            del _HANDLES[key]

    loop.call_soon_threadsafe(drop)
