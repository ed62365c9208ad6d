"""The end-to-end demo behind `make demo`: the control plane at work on an embedded local Ray with
6 logical H100s (workloads in `ainative._demo_work`). Serving and training run at the same time,
as they do on a shared cluster, so the demo takes about as long as its longest thread::

    queues team-a (quota 4 x H100: training and serving) and team-b (2 x H100; a budget with
    warn_at), one cohort; the dashboard; ai.data.range ──map_batches──> features ──shuffle──> dataset
    serve thread:  team-a's Endpoint (0.5 H100 per replica) ──bounded burst──> autoscaling 1 -> 3,
                   nothing shed or failed; deleted once the training thread is done
    train thread:  team-b: b-train, 2 workers x 2 H100, priority 0: borrows 2 of team-a's idle GPUs
                   team-a: a-train, priority 10, 2 H100: no room left ──> b-train preempted
                   (checkpoint, release), requeued, resumed by itself from its checkpoint
    summary: every event asserted, the cost report, the dashboard URL; all released (or --keep).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from ainative import _demo_work as work_mod
from ainative import events

# kept for callers of the old names
add_features, train_fn, LinearModel = work_mod.add_features, work_mod.train_fn, work_mod.LinearModel
TRUE_W, TRUE_B = work_mod.TRUE_W, work_mod.TRUE_B
JOB, URGENT, ENDPOINT = "b-train", "a-train", "demo-regressor"
SLO_MS = 250.0


def _quiet(verbose: bool) -> None:
    """Ray's INFO lines and Serve's per-request access logs off unless ``verbose`` (the summary is
    what a person came for); set before Ray is imported, and again on the loggers it created."""
    import logging

    if verbose:
        return
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
    for name in ("ray", "ray.serve", "ray.data", "ray.train", "ainative"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if not any(isinstance(f, _BelowWarning) for f in logger.filters):
            logger.addFilter(_BelowWarning())   # stays when Serve resets its logger's level to INFO


class _BelowWarning:
    """A logging filter that drops records below WARNING."""

    def filter(self, record: Any) -> bool:
        import logging

        return bool(record.levelno >= logging.WARNING)


def _start_dashboard(out: Callable[[str], Any]) -> Any:
    """The dashboard on 127.0.0.1 for as long as the demo runs: (server, thread, url) or None."""
    from ainative.dashboard import server

    try:
        return server.start_in_thread()
    except Exception as exc:  # the demo does not depend on it
        out(f"(dashboard not started: {exc})")
        return None


class _Log:
    """Lines from the demo's threads, each stamped with the seconds since the demo began and
    the thread's role, printed whole (one lock) so that parallel threads stay readable."""

    def __init__(self, out: Callable[[str], Any], t0: float) -> None:
        self.out, self.t0, self.lock = out, t0, threading.Lock()

    def __call__(self, who: str, text: str) -> None:
        with self.lock:
            self.out(f"  [{time.monotonic() - self.t0:5.1f} s] {who:<6} {text}")

    def plain(self, text: str) -> None:
        with self.lock:
            self.out(text)


def _queues_line(ai: Any) -> str:
    parts = []
    for q in ai.scheduling.status()["queues"]:
        used, quota = q["used"].get("H100", 0), q["quota"].get("H100", 0)
        if not used and not quota:
            continue
        extra = f" (borrowing {used - quota:g})" if used > quota else ""
        parts.append(f"{q['name']} holds {used:g}/{quota:g} H100{extra}")
    return ", ".join(parts)


def _wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"demo: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def _contend(ai: Any, ds: Any, work: str, steps: int, log: _Log, serving: threading.Event
             ) -> dict[str, Any]:
    """b-train borrows team-a's idle GPUs; a-train (priority 10) finds no room (b-train and the
    endpoint hold them) and reclaims them by preemption; b-train is requeued and resumes by itself
    from its checkpoint once a-train is done."""
    began = time.time() - 1.0   # this run's events only (an event log outlives its runs)
    two = ai.Resources(cpus=1, accelerator=ai.Accelerator("H100", 2))
    # 0.1 s a step: b-train must still be training when the preemption lands (a request, a lease
    # poll and a stop at the next checkpoint: a few seconds on a busy machine); preempted after its
    # last step, it would have nothing left to resume
    config = {"steps": steps, "batch_size": 256, "checkpoint_every": 5, "step_sleep_s": 0.1}
    # a-train must find no room, so the endpoint holds its GPUs before b-train borrows the rest
    # (its base lease is admitted before Serve starts a replica): submitted earlier, b-train could
    # finish while a busy machine still starts Serve, and there would be nothing to preempt
    _wait_for(serving.is_set, 300, f"{ENDPOINT}'s admission")
    b = ai.TrainJob(work_mod.train_fn, workers=2, name=JOB, queue="team-b", priority=0, resources=two,
                    config=config, checkpoint=ai.CheckpointConfig(path=os.path.join(work, "ckpt-b"), keep=2),
                    datasets={"train": ds}, progress=False).submit()
    log("train", f"team-b {JOB}: 2 workers x 2 H100, priority 0, {steps} steps (borrows 2 of team-a's GPUs)")
    # b-train has made progress to lose (its first checkpoint) and has most of its steps left
    _wait_for(lambda: b.progress().get("step", 0) >= config["checkpoint_every"], 180, f"{JOB} to train")
    log("queues", _queues_line(ai) + f"; {JOB} at step {b.progress()['step']}")
    a = ai.TrainJob(work_mod.train_fn, workers=1, name=URGENT, queue="team-a", priority=10,
                    resources=two, config={**config, "steps": 5},
                    checkpoint=ai.CheckpointConfig(path=os.path.join(work, "ckpt-a"), keep=1),
                    datasets={"train": ds}, progress=False).submit()
    log("train", f"team-a {URGENT}: 1 worker x 2 H100, priority 10: reclaims its lent quota")
    _wait_for(lambda: _running(a), 180, f"{URGENT} to start")
    log("queues", _queues_line(ai) + f"; {JOB} is {b.status()}")
    urgent = a.wait(timeout_s=180)
    log("train", f"{URGENT} {urgent.status}; {JOB} resumes by itself")
    result = b.wait(timeout_s=240)
    events_ = [e for e in events.read(JOB) if e.get("ts", 0) >= began]
    # the last preemption and resume: the final attempt started from that checkpoint
    pre: dict[str, Any] = next((e for e in reversed(events_) if e["event"] == "preempted"), {})
    res: dict[str, Any] = next((e for e in reversed(events_) if e["event"] == "resumed"), {})
    seen = [e["event"] for e in events_ if e["event"] in ("preempted", "requeued", "resumed")]
    why = f" ({pre['reason'].split(';')[0]})" if pre.get("reason") else ""
    log("train", f"{JOB} events: {', '.join(seen) or 'none'}: preempted at step {pre.get('step')}{why}, "
        f"resumed at step {res.get('step')}")
    log("train", f"{JOB} {result.status}, final loss {result.metrics.get('loss', float('nan')):.4f}, "
        f"resumed from step {result.metrics.get('resumed_from')}")
    history = [r.get("step") for r in result.history]
    return {"status": result.status, "urgent_status": urgent.status, "restarts": result.restarts,
            "loss": result.metrics.get("loss"), "checkpoint": result.checkpoint,
            "events": [e["event"] for e in events_], "preempted_at_step": pre.get("step"),
            "resumed_at_step": res.get("step"), "resumed_from": result.metrics.get("resumed_from"),
            "steps_reported": history, "steps": steps}


def _running(handle: Any) -> bool:
    return bool(handle.progress().get("step", 0) >= 1 or handle.status() in ("succeeded", "failed"))


class _Serving:
    """The serve thread's state: ``admitted`` once the endpoint holds its base lease, ``result``
    (or ``error``) once its burst is measured; the endpoint stays up until ``release`` is set."""

    def __init__(self) -> None:
        self.admitted, self.measured, self.release = threading.Event(), threading.Event(), threading.Event()
        self.result: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.began = 0.0   # wall-clock start of this run (an event log outlives its runs)


def _serve(ai: Any, burst_scale: float, log: _Log, state: _Serving) -> None:
    """Team-a's endpoint (its current model: a least-squares fit) takes a bounded burst beyond one
    replica's capacity and scales up; it stays deployed until the training thread is done."""
    weights = work_mod.fit_least_squares()
    ep = ai.Endpoint(lambda: work_mod.LinearModel(a_ms=50.0, b_ms=0.0, weights=weights), name=ENDPOINT,
                     route="/regress", queue="team-a",
                     batching=ai.BatchingConfig(max_batch_size=1, max_wait_ms=0),
                     resources=ai.Resources(cpus=0.5, accelerator=ai.Accelerator("H100", count=0.5)),
                     autoscaling=ai.AutoscalingConfig(min_replicas=1, max_replicas=3, target_concurrency=2,
                                                      latency_slo_ms=SLO_MS))
    log("serve", f"team-a deploys {ENDPOINT}: 0.5 H100 per replica, 1..3 replicas, SLO {SLO_MS:.0f} ms")
    watcher = threading.Thread(target=_admitted, args=(state,), daemon=True)
    watcher.start()
    h = ep.deploy()
    state.admitted.set()
    try:
        pred = h.predict([1.0, 1.0])
        log("serve", f"ready at {h.url}: predict([1, 1]) = {pred:.3f} (true "
            f"{TRUE_W[0] + TRUE_W[1] + TRUE_B:.3f}); 50 ms per request, no batching: ~20 req/s per replica")
        replicas: list[tuple[int, int]] = []          # (running, running + starting)
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                got = h.metrics(window_s=2.0)
                replicas.append((got.replicas_running, got.replicas_running + got.replicas_starting))
                stop.wait(0.5)

        sampler = threading.Thread(target=watch, daemon=True)
        sampler.start()
        phases = [(10 * burst_scale, 1.0), (40 * burst_scale, 6.0), (10 * burst_scale, 2.0)]
        log("serve", "burst: " + ", then ".join(f"{r:g} req/s for {s:g} s" for r, s in phases))
        # the client waits as long as the endpoint's own request timeout (60 s): a slow answer on a
        # loaded machine is latency (reported against the SLO), not a failure
        load = work_mod.burst(h.url, phases=phases, timeout_s=60.0)
        stop.set()
        sampler.join()
        m = h.metrics(window_s=60.0)
        running = max((r for r, _ in replicas), default=1)
        peak = max((t for _, t in replicas), default=1)     # admitted and started by the autoscaler
        log("serve", f"{load['ok']}/{load['sent']} ok, shed {load['shed']}, failed {load['failed']}; "
            f"p50 {load['p50_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms (client-side, queueing included)")
        cold = "" if running >= peak else f", {peak - running} still starting when the burst ended"
        log("serve", f"autoscaling: replicas 1 -> {peak} (max 3), {running} running at the peak{cold}")
        state.result = {**load, "peak_replicas": peak, "peak_running": running,
                        "replica_seconds": m.replica_seconds, "server_failed": m.failed_total,
                        "predict_1_1": pred}
        state.measured.set()
        state.release.wait()
    finally:
        h.delete()


def _admitted(state: _Serving) -> None:
    """Sets ``state.admitted`` once the endpoint's event log says its base lease was admitted
    (before its first replica has started; deploy() returning sets it too)."""
    while not state.admitted.is_set():
        if any(e["event"] == "admitted" and e.get("ts", 0) >= state.began for e in events.read(ENDPOINT)):
            state.admitted.set()
            return
        state.admitted.wait(0.2)


def _serve_thread(ai: Any, burst_scale: float, log: _Log, state: _Serving) -> None:
    try:
        _serve(ai, burst_scale, log, state)
    except BaseException as exc:  # reported by the main thread; the training must not wait on it
        state.error = exc
        log("serve", f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        state.admitted.set()
        state.measured.set()


def _checks(s: dict[str, Any]) -> list[tuple[str, bool]]:
    tr, sv = s.get("train", {}), s.get("serve", {})
    steps = tr.get("steps", 0)
    return [
        ("both training jobs succeeded", tr.get("status") == "succeeded" and tr.get("urgent_status") == "succeeded"),
        (f"{JOB} preempted, requeued, resumed",
         all(k in tr.get("events", []) for k in ("preempted", "requeued", "resumed"))),
        ("resumed from the preemption's checkpoint", tr.get("preempted_at_step") is not None
         and tr.get("preempted_at_step") == tr.get("resumed_at_step") == tr.get("resumed_from")),
        ("no step lost or repeated", tr.get("steps_reported") == list(range(1, steps + 1))),
        ("endpoint scaled up (replicas started > 1)", sv.get("peak_replicas", 0) > 1),
        ("no request shed or failed", sv.get("sent", 0) > 0 and sv.get("shed") == 0 and sv.get("failed") == 0),
        ("budget warning fired", bool(s.get("budget", {}).get("warnings"))),
    ]


def _budget_warnings(ledger_path: str) -> list[dict[str, Any]]:
    from ainative.cost import ledger as ledger_mod

    book = ledger_mod.Ledger(ledger_path)
    try:
        return [e for e in book.events() if e["kind"] == "warn" and e["reason"] == "budget"]
    finally:
        close = getattr(book, "close", None)
        if close is not None:
            close()


def run(*, rows: int = 20_000, steps: int = 60, out: Callable[[str], Any] = print,
        burst_scale: float = 1.0, verbose: bool = False, keep: bool = False) -> dict[str, Any]:
    """Run the demo; returns its summary (also written as JSON to ``$AINATIVE_HOME/demo-summary.json``);
    ``summary["ok"]`` is whether every check passed. ``keep``: leave Ray, the scheduler, the
    endpoint and the dashboard up until Ctrl-C."""
    _quiet(verbose)
    import ainative as ai
    from ainative.dashboard import server

    t0 = time.monotonic()
    log = _Log(out, t0)
    summary: dict[str, Any] = {}
    work = tempfile.mkdtemp(prefix="ainative-demo-")
    os.environ.setdefault("AINATIVE_HOME", os.path.join(work, "home"))
    cluster = ai.connect(num_cpus=8, num_gpus=6, accelerator_type="H100", include_dashboard=False,
                         log_to_driver=verbose)
    _quiet(verbose)
    summary["ray_session_dir"] = _session_dir()
    dash, serving, server_thread = None, _Serving(), None
    try:
        out("== 1. cluster, queues with a budget, dashboard ==")
        out(cluster.resources().table())
        data = _Background(lambda: _dataset(ai, rows))            # meanwhile: queues, dashboard
        os.environ["AINATIVE_LEDGER"] = ledger = os.path.join(work, "ledger.sqlite")
        budget = ai.Budget(usd=0.50, period="day", warn_at=0.02)
        ai.scheduling.configure(
            [ai.Queue("team-a", quota={"H100": 4}, cohort="demo"),
             ai.Queue("team-b", quota={"H100": 2}, cohort="demo", budget=budget)],
            prices=ai.PriceTable({"H100": 2.00}), fresh=True,
            policy=ai.PolicyConfig(min_runtime_s=0, ping_pong_s=0, preempt_retry_s=0))
        out("queues: team-a 4 x H100 (training and serving), team-b 2 x H100, one cohort (idle quota is "
            "lent);\n        $2.00/GPU-hour; team-b budget $0.50/day, warning at 2%")
        dash = _start_dashboard(out)
        summary["dashboard"] = dash[2] if dash else None
        if dash:
            out(f"dashboard: {dash[2]}/cluster (open it now: the pages follow the demo live)")

        out("\n== 2. at once: team-a serves a burst; team-b trains on borrowed GPUs; team-a reclaims them ==")
        serving.began = time.time() - 1.0
        server_thread = threading.Thread(target=_serve_thread, args=(ai, burst_scale, log, serving),
                                         name="demo-serve", daemon=True)
        server_thread.start()
        ds = data.result(timeout_s=300)
        log("data", f"{ds.count()} rows -> features -> shuffled into {ds.num_blocks()} blocks "
            f"(ready after {data.seconds:.1f} s)")
        summary["train"] = _contend(ai, ds, work, steps, log, serving.admitted)
        warnings = _budget_warnings(ledger)
        for w in warnings[:1]:
            log("budget", w["message"] or w["reason"])
        summary["budget"] = {"warnings": [w["message"] for w in warnings]}
        serving.measured.wait(timeout=300)
        if serving.error is not None:
            raise RuntimeError(f"demo: the serve thread failed: {serving.error}") from serving.error
        summary["serve"] = serving.result
        summary["predict_1_1"] = summary["serve"].get("predict_1_1")
        if not keep:
            serving.release.set()

        out("\n== 3. cost report (the scheduler's ledger) ==")
        report = ai.cost.report(by="queue", path=ledger)
        out(report.table())
        summary["cost"] = {"usd": round(report.total_usd, 4), "gpu_hours": round(report.total_gpu_hours, 4)}
        summary["checks"] = {name: ok for name, ok in _checks(summary)}
        summary["ok"] = all(summary["checks"].values())
        summary["seconds"] = round(time.monotonic() - t0, 1)
        _print_summary(summary, out, keep)
        _write(summary)
        if keep:
            _hold(out)
    finally:
        serving.release.set()
        if server_thread is not None:
            server_thread.join(timeout=60)
        if dash is not None:
            server.stop(dash[0], dash[1])
        _release(ai, out)
        cluster.shutdown()
    out("everything released" + ("" if keep else " (nothing left running)"))
    return summary


class _Background:
    """A function run in a daemon thread; ``result()`` waits for its value (or raises its error)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn, self._t0, self.seconds = fn, time.monotonic(), 0.0
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc
        self.seconds = time.monotonic() - self._t0

    def result(self, timeout_s: float) -> Any:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"demo: timed out after {timeout_s:.0f} s waiting for the dataset")
        if self._error is not None:
            raise self._error
        return self._value


def _dataset(ai: Any, rows: int) -> Any:
    ds = ai.data.range(rows, num_blocks=4).map_batches(work_mod.add_features).shuffle(seed=0)
    return ds.materialize()


def _session_dir() -> str | None:
    """This process's Ray session directory (the e2e test checks that nothing of it runs after the
    demo); None where Ray does not say."""
    try:
        from ray._private import worker

        node = worker._global_node
        return None if node is None else str(node.get_session_dir_path())
    except Exception:  # informational only
        return None


def _hold(out: Callable[[str], Any]) -> None:
    out("--keep: Ray, the scheduler, the endpoint and the dashboard stay up; Ctrl-C to stop")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        out("")


def _write(summary: dict[str, Any]) -> None:
    from ainative.config import home_dir

    path = home_dir() / "demo-summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str))


def _release(ai: Any, out: Callable[[str], Any]) -> None:
    for step in (ai.scheduling.shutdown,):
        try:
            step()
        except Exception as exc:  # keep releasing the rest
            out(f"  (release: {exc})")


def _print_summary(s: dict[str, Any], out: Callable[[str], Any], keep: bool) -> None:
    out("\n== summary ==")
    tr, sv = s.get("train", {}), s.get("serve", {})
    out(f"train:  {tr.get('status')} after {tr.get('restarts')} restart(s); preempted at step "
        f"{tr.get('preempted_at_step')}, resumed from step {tr.get('resumed_at_step')}, "
        f"final loss {tr.get('loss')}")
    if sv:
        out(f"serve:  {sv['ok']}/{sv['sent']} requests ok (shed {sv['shed']}, failed {sv['failed']}), "
            f"p50/p95/p99 = {sv['p50_ms']:.0f}/{sv['p95_ms']:.0f}/{sv['p99_ms']:.0f} ms, "
            f"peak replicas {sv['peak_replicas']}")
    cost = s.get("cost") or {}
    out(f"cost:   ${cost.get('usd', 0):.4f} for {cost.get('gpu_hours', 0):.4f} GPU-hours (from the ledger); "
        f"{len(s.get('budget', {}).get('warnings', []))} budget warning(s)")
    for name, ok in s.get("checks", {}).items():
        out(f"check:  {'ok  ' if ok else 'FAIL'} {name}")
    url = s.get("dashboard")
    if url:
        how = "live until Ctrl-C" if keep else "live while the demo ran; `ainative demo --keep` keeps it up"
        out(f"dashboard: {url}/cluster ({how})")
    out(f"demo finished in {s['seconds']} s")
