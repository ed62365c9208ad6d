"""The two baselines the simulator compares against, on the same engine state.

``fifo``: one global gang FIFO, no quotas; the head blocks everyone behind it (the default
Kubernetes scheduler with coscheduling). ``kueue``: per-queue nominal quota with borrowing in the
cohort, FIFO by priority then age within a queue, no fair-share ordering, and no placement check
before admission: an admitted job holds its quota while it waits for nodes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ainative.policy.engine import Decisions, _Pass

if TYPE_CHECKING:
    from ainative.policy.engine import Engine


def pass_fifo(eng: Engine, now: float, dec: Decisions) -> None:
    for _, _, job_id in list(eng.fifo):
        job = eng.jobs[job_id]
        for t in eng._types(job):
            got = eng.placer.place_job(job, t, frozenset())
            if got is not None:
                eng._start(job, t, got, now, dec)
                break
        else:
            job.reason = (f"head of the FIFO: needs {job.gpus:g} GPUs and no placement now; "
                          "everyone behind it waits")
            return


def pass_kueue(eng: Engine, now: float, dec: Decisions) -> None:
    ctx = _Pass()
    admitted = set(eng.admitted)
    heads = sorted((lst[0][1], q) for q, lst in eng.pending.items() if lst)
    for _, q in heads:                                   # oldest head first, no fair share
        for key in eng.pending[q][:eng.cfg.scan_per_queue]:
            job = eng.jobs[key[3]]
            if job.job_id in admitted:
                continue
            reasons = []
            for t in eng._types(job):
                why = eng._quota(job, t, ctx)
                if why is None:
                    eng.usage.add(job.queue, t, job.gpus)      # quota charged at admission
                    job.metadata["charged"] = t
                    eng.admitted.append(job.job_id)
                    admitted.add(job.job_id)
                    job.reason = "admitted: quota charged, waiting for nodes"
                    break
                reasons.append(why)
            else:
                job.reason = "; ".join(reasons)
    fail: dict[str, float] = {}
    for job_id in list(eng.admitted):
        job = eng.jobs[job_id]
        t = job.metadata["charged"]
        if fail.get(t, math.inf) <= job.gpus:
            continue
        got = eng.placer.place_job(job, t, frozenset())
        if got is None:
            fail[t] = min(fail.get(t, math.inf), job.gpus)
            job.reason = (f"admitted (quota charged) but no placement: needs {job.gpus:g} x {t}; "
                          f"nodes by free {t}: {eng.placer.free_histogram(t)}")
            continue
        eng.admitted.remove(job_id)
        eng._start(job, t, got, now, dec)
