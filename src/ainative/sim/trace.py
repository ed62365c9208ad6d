"""Trace CSV: read (with line-numbered errors) and generate synthetic traces.

Columns (header required, extra columns ignored): ``job_id, submit_time_s, duration_s, num_gpus``
and optional ``gpu_type`` (empty: any), ``team`` (empty: "default"), ``priority`` (default 0),
``preemptible`` (default true).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
from collections.abc import Sequence
from pathlib import Path

from ainative import errors

REQUIRED = ("job_id", "submit_time_s", "duration_s", "num_gpus")
COLUMNS = (*REQUIRED, "gpu_type", "team", "priority", "preemptible")


@dataclasses.dataclass(frozen=True, slots=True)
class TraceJob:
    """One row of a trace."""

    job_id: str
    submit_time_s: float
    duration_s: float
    num_gpus: float
    gpu_type: str | None = None
    team: str = "default"
    priority: int = 0
    preemptible: bool = True


def _bad(path: str, line: int, field: str, value: object, want: str) -> errors.SpecError:
    return errors.SpecError(f"{path} line {line}: {field}={value!r}: {want}", file=path, line=line,
                            field=field, value=value)


def _num(path: str, line: int, row: dict[str, str], field: str) -> float:
    raw = (row.get(field) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise _bad(path, line, field, raw, "must be a number") from None
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise _bad(path, line, field, raw, "must be a finite number >= 0")
    return value


def _row(path: str, line: int, row: dict[str, str]) -> TraceJob:
    job_id = (row.get("job_id") or "").strip()
    if not job_id:
        raise _bad(path, line, "job_id", job_id, "must not be empty")
    gpus = _num(path, line, row, "num_gpus")
    if gpus <= 0 or (gpus > 1 and gpus != int(gpus)):
        raise _bad(path, line, "num_gpus", row.get("num_gpus"),
                   "must be > 0; whole above 1 (fractions only below 1)")
    duration = _num(path, line, row, "duration_s")
    if duration <= 0:
        raise _bad(path, line, "duration_s", row.get("duration_s"), "must be > 0")
    prio_raw = (row.get("priority") or "0").strip()
    try:
        priority = int(prio_raw)
    except ValueError:
        raise _bad(path, line, "priority", prio_raw, "must be an integer") from None
    pre_raw = (row.get("preemptible") or "true").strip().lower()
    if pre_raw not in ("true", "false", "1", "0", "yes", "no"):
        raise _bad(path, line, "preemptible", pre_raw, "must be true or false")
    gpu_type = (row.get("gpu_type") or "").strip().upper() or None
    return TraceJob(job_id, _num(path, line, row, "submit_time_s"), duration, gpus, gpu_type,
                    (row.get("team") or "").strip() or "default", priority,
                    pre_raw in ("true", "1", "yes"))


def read(path: str | Path) -> list[TraceJob]:
    """The rows of a trace CSV, sorted by submit time; SpecError names the line at fault."""
    name = str(path)
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise errors.SpecError(f"cannot read trace {name}: {exc}", file=name) from exc
    with fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise errors.SpecError(f"{name} line 1: header lacks {', '.join(missing)}; it needs "
                                   f"{', '.join(REQUIRED)}", file=name, line=1, field=missing[0])
        reader.fieldnames = header
        jobs, seen = [], set()
        for line, row in enumerate(reader, start=2):
            job = _row(name, line, row)
            if job.job_id in seen:
                raise _bad(name, line, "job_id", job.job_id, "is used twice; ids must be unique")
            seen.add(job.job_id)
            jobs.append(job)
    jobs.sort(key=lambda j: (j.submit_time_s, j.job_id))
    return jobs


def write(jobs: Sequence[TraceJob], path: str | Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for j in jobs:
            w.writerow([j.job_id, f"{j.submit_time_s:.1f}", f"{j.duration_s:.1f}", f"{j.num_gpus:g}",
                        j.gpu_type or "", j.team, j.priority, "true" if j.preemptible else "false"])


_SIZES = ((0.70, 1.0), (0.05, 0.5), (0.05, 0.25), (0.06, 2.0), (0.05, 4.0), (0.04, 8.0),
          (0.025, 16.0), (0.015, 32.0), (0.01, 64.0))


def generate(n_jobs: int = 10_000, *, total_gpus: float = 4096, teams: int = 6, seed: int = 0,
             load: float = 1.0, gpu_types: Sequence[str] = ("A100", "H100")) -> list[TraceJob]:
    """A synthetic trace shaped like public GPU cluster traces: skewed team activity, diurnal
    arrivals, log-normal durations (median 10 min, p99 ~2 days, capped at 7 days), mostly 1-GPU
    jobs with fractional requests and a tail of 8-64 GPU gangs. Arrivals are spread so the offered
    work (first 6 h of each job) is ``load`` times what the cluster can do over the arrival span."""
    if n_jobs < 1 or teams < 1 or load <= 0 or total_gpus <= 0:
        raise errors.ConfigError("generate needs n_jobs >= 1, teams >= 1, load > 0, total_gpus > 0",
                                 field="n_jobs", value=n_jobs)
    rnd = random.Random(seed)
    activity = [1.0 / (k + 1) ** 0.8 for k in range(teams)]
    names = [f"team-{chr(ord('a') + k)}" for k in range(teams)]
    sizes, durations = [], []
    for _ in range(n_jobs):
        r, acc, size = rnd.random(), 0.0, 1.0
        for p, s in _SIZES:
            acc += p
            if r < acc:
                size = s
                break
        sizes.append(size)
        durations.append(min(600.0 * math.exp(rnd.gauss(0.0, 2.43)), 7 * 86400.0))
    # Offered load counts each job's first 6 hours: the rare week-long jobs would otherwise stretch
    # the arrival span until nothing ever waits.
    span = sum(s * min(d, 6 * 3600.0) for s, d in zip(sizes, durations)) / (total_gpus * load)
    times = _diurnal_times(rnd, n_jobs, span)
    jobs = []
    for i in range(n_jobs):
        t = rnd.random()
        gpu_type = None if t < 0.4 else (gpu_types[0] if t < 0.8 or len(gpu_types) == 1 else gpu_types[1])
        team = rnd.choices(names, weights=activity)[0]
        jobs.append(TraceJob(f"j{i:05d}", round(times[i], 1), round(max(durations[i], 10.0), 1), sizes[i],
                             gpu_type, team, 1 if rnd.random() < 0.1 else 0, rnd.random() < 0.9))
    return jobs


def _diurnal_times(rnd: random.Random, n: int, span: float) -> list[float]:
    # Thinning: accept a uniform time with probability following a day/night cycle.
    out: list[float] = []
    while len(out) < n:
        t = rnd.random() * span
        if rnd.random() < 0.5 * (1 + 0.8 * math.sin(2 * math.pi * t / 86400.0)) + 0.1:
            out.append(t)
    return sorted(out)
