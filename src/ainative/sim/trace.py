"""Trace CSV: read (with line-numbered errors) and generate synthetic traces.

Columns (header required, extra columns ignored): ``job_id, submit_time_s, duration_s, num_gpus``
and optional ``gpu_type`` (empty: any), ``team`` (empty: "default"), ``priority`` (default 0),
``preemptible`` (default true), ``cpus`` (CPU cores; default 0: not modelled).
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
    cpus: float = 0.0
    """CPU cores it asks for beside its GPUs (0: not modelled; the policy simulation ignores it,
    the FGD measurement counts it)."""


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
    cpus = _num(path, line, row, "cpus") if (row.get("cpus") or "").strip() else 0.0
    return TraceJob(job_id, _num(path, line, row, "submit_time_s"), duration, gpus, gpu_type,
                    (row.get("team") or "").strip() or "default", priority,
                    pre_raw in ("true", "1", "yes"), cpus)


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
    cpus = any(j.cpus > 0 for j in jobs)     # the column only when some job asks for CPUs
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS + (("cpus",) if cpus else ()))
        for j in jobs:
            w.writerow([j.job_id, f"{j.submit_time_s:.1f}", f"{j.duration_s:.1f}", f"{j.num_gpus:g}",
                        j.gpu_type or "", j.team, j.priority, "true" if j.preemptible else "false"]
                       + ([f"{j.cpus:g}"] if cpus else []))


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


# ---- production-shaped traces ------------------------------------------------------------------
# Calibrated against the Alibaba GPU-sharing trace of the FGD paper (clusterdata,
# cluster-trace-gpu-v2023, openb_pod_list_default.csv: 8,152 pods, 7,064 asking for GPUs, on
# openb_node_list_gpu_node.csv: 1,213 nodes, 6,212 GPUs); the figures are in docs/scheduling.md.
FRACTION_SIZES = ((0.350, 0.81), (0.244, 0.47), (0.107, 0.32), (0.082, 0.65), (0.045, 0.23),
                  (0.042, 0.46), (0.024, 0.59), (0.024, 0.16), (0.023, 0.55), (0.020, 0.22),
                  (0.015, 0.37), (0.008, 0.11), (0.006, 0.48))
"""(probability, GPU share) of a fractional request: openb's thirteen most common ``gpu_milli``
values (99.1% of its fractional pods)."""
GANG_SIZES = ((0.21, 2.0), (0.20, 4.0), (0.59, 8.0))
"""(probability, GPUs) of a multi-GPU request (openb: 16 x 2, 15 x 4, 44 x 8)."""
NODE_KINDS = (("G2", 8, 0.707, 96.0), ("T4", 2, 0.125, 104.0), ("T4", 4, 0.011, 96.0),
              ("P100", 2, 0.035, 16.0), ("P100", 2, 0.007, 64.0), ("P100", 1, 0.001, 8.0),
              ("G3", 8, 0.050, 128.0), ("V100M16", 4, 0.018, 32.0), ("V100M16", 1, 0.003, 8.0),
              ("V100M16", 8, 0.010, 64.0), ("V100M32", 8, 0.027, 96.0), ("V100M32", 4, 0.006, 48.0),
              ("A10", 1, 0.001, 128.0))
"""(GPU model, GPUs per node, share of the cluster's GPUs, CPU cores per node): openb's node kinds
(its twelve (model, GPUs) kinds; P100 x 2 comes with 16 and with 64 cores)."""
CPU_TABLE: tuple[tuple[float, tuple[tuple[float, float], ...]], ...] = (
    (0.0, ((0.336, 12.5), (0.267, 32.0), (0.170, 8.0), (0.110, 15.4), (0.087, 16.5))),
    (0.11, ((0.75, 4.0), (0.17, 6.0), (0.08, 8.0))),
    (0.16, ((0.73, 4.0), (0.27, 6.0))),
    (0.22, ((0.69, 4.0), (0.31, 8.0))),
    (0.23, ((0.87, 4.0), (0.13, 8.0))),
    (0.32, ((0.71, 4.0), (0.22, 8.0), (0.07, 1.0))),
    (0.37, ((0.96, 4.2), (0.04, 2.0))),
    (0.46, ((0.94, 6.0), (0.05, 12.0), (0.02, 8.0))),
    (0.47, ((0.52, 11.9), (0.48, 8.0))),
    (0.48, ((0.95, 4.0), (0.05, 8.0))),
    (0.55, ((1.0, 4.2),)),
    (0.59, ((1.0, 3.2),)),
    (0.65, ((0.94, 11.9), (0.05, 8.0), (0.01, 4.0))),
    (0.81, ((0.97, 3.2), (0.03, 4.2))),
    (1.0, ((0.223, 11.3), (0.153, 11.4), (0.120, 3.2), (0.083, 12.0), (0.065, 18.7), (0.053, 11.9),
           (0.050, 9.8), (0.042, 8.0), (0.041, 4.0), (0.040, 15.7), (0.038, 16.0), (0.024, 14.2),
           (0.021, 24.2), (0.010, 8.2), (0.009, 15.2), (0.007, 16.4), (0.004, 1.0), (0.003, 7.0))),
    (2.0, ((0.44, 16.2), (0.19, 6.0), (0.19, 30.2), (0.13, 17.4))),
    (4.0, ((0.6, 32.2), (0.2, 32.0), (0.2, 60.2))),
    (8.0, ((0.41, 88.0), (0.41, 64.2), (0.07, 120.0), (0.07, 64.0))))
"""(GPUs asked, ((probability, CPU cores), ...)): the CPU cores openb's pods ask beside each GPU
request size (0: CPU-only pods); a size not listed uses the nearest one."""


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ProductionShape:
    """Knobs of ``generate_production``; the defaults follow the public Alibaba GPU-sharing trace."""

    fraction_share: float = 0.44
    """Share of jobs asking for part of one GPU (openb: 43.6% of GPU pods)."""
    fraction_sizes: tuple[tuple[float, float], ...] = FRACTION_SIZES
    gang_share: float = 0.011
    """Share of jobs asking for 2 or more GPUs (openb: 1.1% of GPU pods, 7.3% of GPU demand)."""
    gang_sizes: tuple[tuple[float, float], ...] = GANG_SIZES
    duration_median_s: float = 545.0
    """Median run time (openb: 545 s; p90 6,260 s; p99 114,036 s)."""
    duration_sigma: float = 2.3
    """Log-normal sigma: 2.3 puts p99 near openb's 114,000 s."""
    duration_cap_s: float = 7 * 86400.0
    """Longest run time (the trace's long-running services are capped here)."""
    typed_share: float = 0.33
    """Share of jobs that name a GPU model (openb's README: about 33% in production)."""
    node_kinds: tuple[tuple[str, int, float, float], ...] = NODE_KINDS
    cpu_table: tuple[tuple[float, tuple[tuple[float, float], ...]], ...] = CPU_TABLE
    """CPU cores asked beside each GPU request size (openb: 6.0 cores on average with a fraction,
    11.1 with one GPU, 80 with eight)."""
    cpu_only_share: float = 0.133
    """Share of tasks asking no GPU, only CPUs (openb: 1,088 of 8,152 pods); they take CPUs on the
    GPU nodes. Used by ``production_requests`` (the FGD measurement), not in traces of GPU jobs."""
    burst_mean: float = 4.0
    """Mean jobs per arrival burst (a sweep: same team, same request, same instant); 1 = Poisson."""
    team_skew: float = 1.0
    """Zipf exponent of team activity (0: equal teams)."""

    def __post_init__(self) -> None:
        for f in ("fraction_share", "gang_share", "typed_share", "cpu_only_share"):
            v = getattr(self, f)
            if not 0.0 <= v <= 1.0:
                raise errors.ConfigError(f"ProductionShape.{f} must be in [0, 1], got {v!r}", field=f, value=v)
        if self.fraction_share + self.gang_share > 1.0:
            raise errors.ConfigError("ProductionShape: fraction_share + gang_share must be <= 1, got "
                                     f"{self.fraction_share + self.gang_share:g}", field="gang_share",
                                     value=self.gang_share)
        for f in ("duration_median_s", "duration_sigma", "duration_cap_s"):
            if not getattr(self, f) > 0:
                raise errors.ConfigError(f"ProductionShape.{f} must be > 0", field=f, value=getattr(self, f))
        if self.burst_mean < 1 or self.team_skew < 0:
            raise errors.ConfigError("ProductionShape: burst_mean must be >= 1 and team_skew >= 0",
                                     field="burst_mean", value=self.burst_mean)
        if any(not 0 < s < 1 for _, s in self.fraction_sizes):
            raise errors.ConfigError("ProductionShape.fraction_sizes: shares must be in (0, 1)",
                                     field="fraction_sizes", value=self.fraction_sizes)


def production_cluster(total_gpus: int, shape: ProductionShape | None = None) -> dict[str, object]:
    """A cluster file (as a dict) with ``shape.node_kinds``' models and node sizes, about
    ``total_gpus`` GPUs in all (every kind gets at least one node)."""
    kinds = (shape or ProductionShape()).node_kinds
    groups = []
    for model, per, share, cpus in kinds:
        count = max(1, round(total_gpus * share / per))
        groups.append({"count": count, "gpus_per_node": per, "gpu_type": model, "cpus": cpus})
    return {"node_groups": groups}


def cpus_for(rnd: random.Random, gpus: float, table: Sequence[tuple[float, Sequence[tuple[float, float]]]]) -> float:
    """CPU cores drawn for a request of ``gpus`` from ``table`` (the nearest size listed)."""
    if not table:
        return 0.0
    _, rows = min(table, key=lambda row: (abs(row[0] - gpus), row[0]))
    return _pick(rnd, rows)


def production_requests(n: int, *, seed: int = 0, shape: ProductionShape | None = None,
                        typed: bool = False) -> list[tuple[float, float, str | None]]:
    """``n`` tasks drawn independently from ``shape``'s request mix as (GPUs, CPU cores, GPU model
    or None), CPU-only tasks included (GPUs 0): the FGD measurement's workload. ``typed``: a
    ``typed_share`` of GPU tasks name a model (openb's default pod list names none)."""
    sh = shape or ProductionShape()
    rnd = random.Random(seed)
    models = sorted({k[0] for k in sh.node_kinds})
    model_w = [sum(k[2] for k in sh.node_kinds if k[0] == m) for m in models]
    out: list[tuple[float, float, str | None]] = []
    for _ in range(n):
        if rnd.random() < sh.cpu_only_share:
            out.append((0.0, cpus_for(rnd, 0.0, sh.cpu_table), None))
            continue
        r = rnd.random()
        size = (_pick(rnd, sh.fraction_sizes) if r < sh.fraction_share
                else _pick(rnd, sh.gang_sizes) if r < sh.fraction_share + sh.gang_share else 1.0)
        model = rnd.choices(models, weights=model_w)[0] if typed and rnd.random() < sh.typed_share else None
        out.append((size, cpus_for(rnd, size, sh.cpu_table), model))
    return out


def _pick(rnd: random.Random, table: Sequence[tuple[float, float]]) -> float:
    r, acc = rnd.random() * sum(p for p, _ in table), 0.0
    for p, v in table:
        acc += p
        if r < acc:
            return v
    return table[-1][1]


def generate_production(n_jobs: int = 10_000, *, total_gpus: float = 4096, teams: int = 8, seed: int = 0,
                        load: float = 1.0, shape: ProductionShape | None = None) -> list[TraceJob]:
    """A trace shaped like a production GPU-sharing cluster (see ``ProductionShape``): many
    fractional requests, few multi-GPU gangs, heavy-tailed capped run times, a third of jobs bound
    to one GPU model, arrivals in bursts on a day/night cycle, skewed team activity. Arrivals are
    spread so the offered work (first 6 h of each job) is ``load`` times the cluster's capacity."""
    if n_jobs < 1 or teams < 1 or load <= 0 or total_gpus <= 0:
        raise errors.ConfigError("generate_production needs n_jobs >= 1, teams >= 1, load > 0, "
                                 "total_gpus > 0", field="n_jobs", value=n_jobs)
    sh = shape or ProductionShape()
    rnd = random.Random(seed)
    names = [f"team-{chr(ord('a') + k)}" if k < 26 else f"team-{k}" for k in range(teams)]
    activity = [1.0 / (k + 1) ** sh.team_skew for k in range(teams)]
    models = sorted({k[0] for k in sh.node_kinds})
    model_w = [sum(k[2] * k[1] for k in sh.node_kinds if k[0] == m) for m in models]
    cpu_rnd = random.Random(seed * 7919 + 1)     # its own stream: CPUs leave the rest as it was
    cpus: list[float] = []
    jobs: list[tuple[int, float, str, float, str | None, int, bool]] = []   # (burst, duration, ...)
    total_work = 0.0
    n = 0
    while n < n_jobs:
        r = rnd.random()
        size = (_pick(rnd, sh.fraction_sizes) if r < sh.fraction_share
                else _pick(rnd, sh.gang_sizes) if r < sh.fraction_share + sh.gang_share else 1.0)
        k = min(n_jobs - n, 1 + (int(rnd.expovariate(1.0 / (sh.burst_mean - 1))) if sh.burst_mean > 1 else 0))
        team = rnd.choices(names, weights=activity)[0]
        model = rnd.choices(models, weights=model_w)[0] if rnd.random() < sh.typed_share else None
        median = sh.duration_median_s * math.exp(rnd.gauss(0.0, sh.duration_sigma))
        cpu = cpus_for(cpu_rnd, size, sh.cpu_table)
        for _ in range(k):
            cpus.append(cpu)
            d = min(max(10.0, median * math.exp(rnd.gauss(0.0, 0.3))), sh.duration_cap_s)
            jobs.append((n, d, team, size, model, 1 if rnd.random() < 0.1 else 0, rnd.random() < 0.9))
            total_work += size * min(d, 6 * 3600.0)
        n += k
    span = total_work / (total_gpus * load)
    # one arrival time per burst: a burst shares its team, request and instant
    firsts = sorted({j[0] for j in jobs})
    times = _diurnal_times(rnd, len(firsts), span)
    rnd.shuffle(times)
    at = dict(zip(firsts, times))
    rows = sorted((round(at[burst], 1), k, round(d, 1), size, model, team, prio, pre)
                  for k, (burst, d, team, size, model, prio, pre) in enumerate(jobs))
    return [TraceJob(f"p{i:06d}", r[0], r[2], r[3], r[4], r[5], r[6], r[7], cpus[r[1]])
            for i, r in enumerate(rows)]
