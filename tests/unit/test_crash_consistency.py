"""kill -9 at random points of a meter close and of a checkpoint save (real processes, no Ray).

A forked child loops over the operation; the parent kills it with SIGKILL after a random number of
completed rounds plus a random delay, then recovers as a restarted process would and checks:

- the ledger: every job is charged exactly once for exactly the time it held its GPUs (its charge
  intervals tile [start, end] with no gap and no overlap), a re-close after recovery charges exactly
  the remainder from the last mark, and closing twice charges nothing;
- checkpoints: every checkpoint listed as committed loads with all its files intact, the latest
  reported one is among them, and a resumed writer commits the next one.

The fast tier runs a few kills of each; the slow tier 100 meter closes and 50 checkpoint saves.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import random
import signal
import tempfile
import time
from collections import defaultdict

import pytest

from ainative.cost import ledger as ledger_mod
from ainative.cost import meter as meter_mod
from ainative.policy.cost import guardrails as g
from ainative.policy.pricing import PriceTable
from ainative.train import _checkpoint

PRICES = PriceTable({"H100": 4.0}, cpu_core_hour_usd=0.04)
HELD_S = 300.0  # each job: start at i*1000, polls at +100 and +200, finish at +300
GPUS = 2
CPUS = 1
_CTX = multiprocessing.get_context("fork")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _job_spec(name: str) -> g.JobSpec:
    return g.JobSpec(name=name, queue="q", gpus={"H100": GPUS}, cpus=CPUS)


def _base(job: str) -> float:
    return int(job[1:]) * 1000.0


def _meter_child(path: str, done: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    clock = Clock()
    meter = meter_mod.Meter.open(path, prices=PRICES, clock=clock)
    deadline = time.monotonic() + 30.0  # never outlive a parent that died
    for i in itertools.count():
        if time.monotonic() > deadline:
            os._exit(3)
        job = f"j{i}"
        clock.t = _base(job)
        meter.start(_job_spec(job))
        for _ in range(2):
            clock.t += 100.0
            meter.poll(job)
        clock.t = _base(job) + HELD_S
        meter.finish(job, "succeeded")
        done.value = i + 1


def _kill_at_random(target, args: tuple, done, rng: random.Random, rounds: int,
                    max_delay_s: float) -> None:
    """Start ``target`` in a forked child, wait until it finished ``rounds`` rounds, wait a random
    delay more (the random point inside the next round), then SIGKILL it."""
    child = _CTX.Process(target=target, args=(*args, done), daemon=True)
    child.start()
    deadline = time.monotonic() + 20.0
    while done.value < rounds and child.is_alive():
        assert time.monotonic() < deadline, "the child made no progress"
        time.sleep(0.001)
    time.sleep(rng.uniform(0.0, max_delay_s))  # the random kill point, not a wait for a condition
    assert child.is_alive(), f"the child exited on its own (code {child.exitcode})"
    os.kill(child.pid, signal.SIGKILL)
    child.join(10.0)
    assert child.exitcode == -signal.SIGKILL


def _seconds_by_job(charges) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = defaultdict(float)
    for c in charges:
        out[(c.job, c.accelerator)] += c.gpu_seconds
    return out


def _check_ledger_after_kill(path: str) -> str:
    """Recover like a restarted meter, close what was open, check every invariant; returns
    where the kill landed (for the coverage summary)."""
    clock = Clock()
    meter = meter_mod.Meter.open(path, prices=PRICES, clock=clock)
    ledger = meter.ledger
    marks = {spec.name: last for spec, _started, last in ledger.meters()}
    before = _seconds_by_job(ledger.charges())
    for job in meter.running():
        clock.t = _base(job) + HELD_S
        meter.finish(job, "recovered")
    after_close = ledger.charges()
    for job, mark in marks.items():  # the re-close charges exactly the remainder from the mark
        new = [c for c in after_close if c.job == job and c.start_s >= mark]
        assert {(c.start_s, c.end_s) for c in new} <= {(mark, _base(job) + HELD_S)}
        got = _seconds_by_job(after_close)[(job, "H100")] - before[(job, "H100")]
        assert got == pytest.approx(GPUS * (_base(job) + HELD_S - mark))
    jobs = sorted({c.job for c in after_close} | set(marks), key=_base)
    if not jobs:  # killed before the first start committed: nothing to charge
        assert after_close == [] and ledger.meters() == []
        return "before any start"
    for job in jobs:  # closing again, from a fresh meter too, charges nothing
        meter.finish(job, "again")
    meter_mod.Meter.open(path, prices=PRICES, clock=clock).finish(jobs[-1], "again")
    charges = ledger.charges()
    assert len(charges) == len(after_close)
    assert ledger.meters() == []
    for job in jobs:
        for accelerator, usd_per_s in (("H100", GPUS * 4.0 / 3600), ("CPU", CPUS * 0.04 / 3600)):
            mine = [c for c in charges if c.job == job and c.accelerator == accelerator]
            spans = sorted((c.start_s, c.end_s) for c in mine)
            assert spans, f"{job}: no {accelerator} charge"
            assert spans[0][0] == _base(job) and spans[-1][1] == _base(job) + HELD_S, spans
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), f"gap or overlap: {spans}"
            usd = sum(c.cost_usd for c in mine)
            assert usd == pytest.approx(usd_per_s * HELD_S), f"{job} {accelerator}: ${usd}"
        held = sum(c.gpu_seconds for c in charges if c.job == job)
        assert held == pytest.approx(GPUS * HELD_S), f"{job}: {held} GPU-seconds"
        ends = [e for e in ledger.events(job) if e["kind"] == "end"]
        assert len(ends) == 1, f"{job}: {len(ends)} end events"
    usd = ledger.total_usd()
    assert usd == pytest.approx(len(jobs) * HELD_S / 3600.0 * (GPUS * 4.0 + CPUS * 0.04))
    ledger.close()
    return f"open@{marks[jobs[-1]] - _base(jobs[-1]):g}" if jobs[-1] in marks else "closed"


@pytest.mark.parametrize("runs", [10, pytest.param(100, marks=pytest.mark.slow)])
def test_meter_close_survives_kill9_at_random_points(tmp_path, runs):
    rng = random.Random(1300 + runs)
    landed: dict[str, int] = defaultdict(int)
    for run in range(runs):
        path = str(tmp_path / f"ledger-{run}.sqlite")
        done = _CTX.RawValue("i", 0)  # no lock: a child killed while holding one would hang us
        _kill_at_random(_meter_child, (path,), done, rng, rounds=rng.choice((0, 1, 2, 2, 3)),
                        max_delay_s=0.02)
        landed[_check_ledger_after_kill(path)] += 1
    print(f"kill points over {runs} runs: {dict(landed)}")


def test_a_second_meter_closing_the_same_job_charges_nothing(tmp_path):
    path, clock = str(tmp_path / "l.sqlite"), Clock()
    first = meter_mod.Meter.open(path, prices=PRICES, clock=clock)
    first.start(_job_spec("j0"))
    clock.t = 100.0
    second = meter_mod.Meter.open(path, prices=PRICES, clock=clock)  # resumed the open meter
    clock.t = HELD_S
    first.finish("j0", "succeeded")
    second.finish("j0", "succeeded")  # a retry after a crash that had committed the close
    seconds = _seconds_by_job(ledger_mod.Ledger(path).charges())
    assert seconds[("j0", "H100")] == pytest.approx(GPUS * HELD_S)


# -- checkpoints -------------------------------------------------------------------------------
FILES = ("model.bin", "nested/optim.bin", "nested/deeper/rng.bin")


def _content(step: int, name: str) -> bytes:
    return hashlib.sha256(f"{step}/{name}".encode()).digest() * 2048  # 64 KiB


def _ckpt_child(root: str, done: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    storage = _checkpoint.Storage(root, "job", keep=2)
    src = tempfile.mkdtemp(prefix="ckpt-src-", dir=root)   # killed with SIGKILL: the test's dir holds it
    deadline = time.monotonic() + 30.0
    for step in itertools.count(1):
        if time.monotonic() > deadline:
            os._exit(3)
        for name in FILES:
            os.makedirs(os.path.dirname(os.path.join(src, name)), exist_ok=True)
            with open(os.path.join(src, name), "wb") as f:
                f.write(_content(step, name))
        storage.commit(step, src, {"loss": 1.0 / step}, {"epoch": step})
        done.value = step  # report() returned: this step must stay loadable


def _check_checkpoints_after_kill(root: str, reported: int) -> int:
    storage = _checkpoint.Storage(root, "job", keep=2)
    committed = storage.committed()
    if reported:
        assert committed and committed[-1] >= reported, (committed, reported)
    for step in committed:  # no partial checkpoint is ever visible as committed
        meta = storage.read_meta(step)
        assert meta["step"] == step and meta["metrics"] == {"loss": 1.0 / step}
        assert storage.data_state(step) == {"epoch": step}
        local = storage.local_copy(step)
        for name in FILES:
            with open(os.path.join(local, name), "rb") as f:
                assert f.read() == _content(step, name), f"checkpoint {step}: {name} damaged"
    latest = storage.latest()
    resumed = (latest or 0) + 1  # a restarted writer commits the next step over any leftover
    src = tempfile.mkdtemp(prefix="ckpt-src-", dir=root)
    for name in FILES:
        os.makedirs(os.path.dirname(os.path.join(src, name)), exist_ok=True)
        with open(os.path.join(src, name), "wb") as f:
            f.write(_content(resumed, name))
    storage.commit(resumed, src, {"loss": 1.0 / resumed}, {"epoch": resumed})
    assert storage.latest() == resumed
    return len(committed)


@pytest.mark.parametrize("runs", [5, pytest.param(50, marks=pytest.mark.slow)])
def test_checkpoint_save_survives_kill9_at_random_points(tmp_path, runs):
    rng = random.Random(5000 + runs)
    for run in range(runs):
        root = str(tmp_path / f"run-{run}")
        os.makedirs(root)
        done = _CTX.RawValue("i", 0)  # no lock: a child killed while holding one would hang us
        _kill_at_random(_ckpt_child, (root,), done, rng, rounds=rng.randint(0, 3),
                        max_delay_s=0.03)
        _check_checkpoints_after_kill(root, done.value)


def test_commit_fsyncs_files_and_directories_before_the_rename(tmp_path, monkeypatch):
    storage = _checkpoint.Storage(str(tmp_path / "root"), "job", keep=None)
    dest, base = storage.path_of(7), storage.base
    calls: list[tuple[str, bool]] = []  # (what was fsynced, was the commit renamed yet)
    real_fsync, real_open = os.fsync, os.open
    names: dict[int, str] = {}

    def tracking_open(path, flags, *args, **kw):
        fd = real_open(path, flags, *args, **kw)
        names[fd] = os.fspath(path)
        return fd

    def tracking_fsync(fd):
        calls.append((names.get(fd, "?"), os.path.exists(f"{dest}/{_checkpoint.META}")))
        return real_fsync(fd)

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"a")
    (src / "sub" / "b.bin").write_bytes(b"b")
    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "fsync", tracking_fsync)
    storage.commit(7, str(src), {}, None)
    before = {path for path, committed in calls if not committed}
    after = [path for path, committed in calls if committed]
    for path in (f"{dest}/a.bin", f"{dest}/sub/b.bin", f"{dest}/{_checkpoint.META}.tmp",
                 f"{dest}/sub", dest, base):
        assert path in before, f"{path} not fsynced before the commit rename: {calls}"
    assert after == [dest], f"the directory must be fsynced after the rename: {calls}"
