"""The embedded Ray's start is tried again when its raylet does not register in Ray's 30 s, and
the half-started processes of a failed try are stopped (no Ray started here: ray.init is faked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ainative import errors
from ainative.cluster import local

TIMEOUT = Exception("The current node timed out during startup. This could happen because some "
                    "of the raylet failed to startup or the GCS has become overloaded.")


def _fake_init(outcomes: list, spawned: list):
    def init(**kwargs):
        # like a failed ray.init: it leaves a child process (its "GCS") running
        spawned.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                         "/venv/site-packages/ray/core/src/ray/gcs/gcs_server"]))
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
    return init


def test_a_start_timeout_is_retried_and_its_leftovers_stopped(monkeypatch):
    import ray

    spawned: list = []
    monkeypatch.setattr(ray, "init", _fake_init([TIMEOUT, TIMEOUT, "ctx"], spawned))
    assert local._init_with_retries({"address": "local"}) == "ctx"
    assert len(spawned) == 3
    assert [p.poll() is not None for p in spawned] == [True, True, False]  # only failed tries'
    spawned[-1].kill()
    spawned[-1].wait()


def test_only_new_ray_processes_are_stopped(monkeypatch):
    ray_like = [sys.executable, "-c", "import time; time.sleep(120)",
                "/venv/site-packages/ray/core/src/ray/raylet/raylet"]
    older = subprocess.Popen(ray_like)                  # a Ray process started before the try
    before = local._children()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    new = subprocess.Popen(ray_like)
    try:
        assert local._stop_new_children(before) == 1
        assert new.wait(timeout=10) is not None
        assert older.poll() is None and other.poll() is None
    finally:
        for proc in (older, other, new):
            proc.kill()
            proc.wait()


def test_three_timeouts_raise_a_cluster_error_that_names_the_way_out(monkeypatch):
    import ray

    spawned: list = []
    monkeypatch.setattr(ray, "init", _fake_init([TIMEOUT] * 3, spawned))
    with pytest.raises(errors.ClusterError, match="ray start --head"):
        local._init_with_retries({"address": "local"})
    assert all(p.poll() is not None for p in spawned)


def test_other_start_errors_are_not_retried(monkeypatch):
    import ray

    spawned: list = []
    monkeypatch.setattr(ray, "init", _fake_init([ValueError("bad num_cpus"), "ctx"], spawned))
    with pytest.raises(ValueError, match="bad num_cpus"):
        local._init_with_retries({"address": "local"})
    assert len(spawned) == 1
    spawned[0].kill()
    spawned[0].wait()
