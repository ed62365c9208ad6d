"""Background loops that call Ray are stopped, and their calls in flight awaited, before ainative
shuts Ray down (a call after ray.shutdown() ends the process). No Ray here."""

from __future__ import annotations

import threading
import time

from ainative.cluster import background


def _loop(stop: threading.Event, in_call: threading.Event, calls: list) -> None:
    while not stop.wait(0.01):
        in_call.set()
        time.sleep(0.3)            # a Ray call under way
        calls.append(time.monotonic())


def test_stop_all_waits_for_the_call_in_flight():
    stop, in_call, calls = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=_loop, args=(stop, in_call, calls), daemon=True)
    background.register(stop, thread)
    thread.start()
    assert in_call.wait(5)
    assert background.stop_all(timeout_s=5) == 1
    done = time.monotonic()
    assert not thread.is_alive() and stop.is_set()
    assert calls and calls[-1] <= done               # no call finishes after stop_all returned
    assert background.stop_all() == 0                # nothing left registered


def test_a_loop_that_never_started_is_not_waited_for():
    stop = threading.Event()
    background.register(stop, threading.Thread(target=lambda: None))
    assert background.stop_all(timeout_s=1) == 0
    assert stop.is_set()
