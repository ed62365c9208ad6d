"""The spend ledger: an embedded SQLite database on the head node.

Every metered interval is one row in ``charges``; ``meters`` holds the jobs being metered (their
shape and the end of their last charged interval), so that a restarted meter resumes exactly where
the last one stopped and charges the gap; ``events`` keeps warnings, flags, refusals and stops.
WAL mode lets ``ainative cost report`` read while the meter writes.
"""

from __future__ import annotations

import json
import os
import pathlib
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from ainative import errors
from ainative.policy import pricing
from ainative.policy.cost.records import Charge, JobSpec

LEDGER_ENV = "AINATIVE_LEDGER"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, queue TEXT, team TEXT,
    accelerator TEXT NOT NULL, start_s REAL NOT NULL, end_s REAL NOT NULL,
    gpu_seconds REAL NOT NULL, cost_usd REAL NOT NULL);
CREATE INDEX IF NOT EXISTS charges_end ON charges(end_s);
CREATE TABLE IF NOT EXISTS meters (
    job TEXT PRIMARY KEY, spec TEXT NOT NULL, started_s REAL NOT NULL, last_meter_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, job TEXT, kind TEXT NOT NULL,
    reason TEXT, message TEXT);
"""


def default_path() -> pathlib.Path:
    """``$AINATIVE_LEDGER``, else ``ledger.sqlite`` in ``$AINATIVE_HOME`` (default ``~/.ainative``)."""
    from ainative.config import home_dir

    env = os.environ.get(LEDGER_ENV)
    return pathlib.Path(env).expanduser() if env else home_dir() / "ledger.sqlite"


class Ledger:
    """Durable spend rows. Opening it checks that ``path`` can be written (ConfigError if not)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = pathlib.Path(path).expanduser() if path is not None else default_path()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise errors.ConfigError(
                f"ledger path {str(self.path)!r} cannot be written ({exc}); pass a writable "
                f"ledger_path or set ${LEDGER_ENV}", field="ledger_path", value=str(self.path)) from exc

    def close(self) -> None:
        self._db.close()

    # -- writes: one transaction per meter step, so a crash never leaves half a step --------
    def record(self, charges: Iterable[Charge], *, meter: tuple[str, float] | None = None,
               events: Iterable[tuple[float, str, str, str, str]] = ()) -> None:
        """Append ``charges``, move the job's meter mark to ``meter=(job, last_meter_s)`` and add
        ``events`` (ts, job, kind, reason, message), atomically."""
        rows = [(c.job, c.queue, c.team, c.accelerator, c.start_s, c.end_s, c.gpu_seconds, c.cost_usd)
                for c in charges]
        with self._lock, self._transaction() as db:
            db.executemany("INSERT INTO charges (job, queue, team, accelerator, start_s, end_s, "
                           "gpu_seconds, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if meter is not None:
                db.execute("UPDATE meters SET last_meter_s = ? WHERE job = ?", (meter[1], meter[0]))
            db.executemany("INSERT INTO events (ts, job, kind, reason, message) VALUES (?, ?, ?, ?, ?)",
                           list(events))
        _export(rows)

    def open_meter(self, job: JobSpec, started_s: float) -> None:
        with self._lock, self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meters (job, spec, started_s, last_meter_s) "
                       "VALUES (?, ?, ?, ?)", (job.name, json.dumps(_spec_to_dict(job)), started_s,
                                               started_s))

    def close_meter(self, job: str, charges: Iterable[Charge] = (),
                    events: Iterable[tuple[float, str, str, str, str]] = ()) -> bool:
        """The job's last ``charges``, its ``events`` and the deletion of its meter row, in ONE
        transaction, so a crash leaves either an open meter (a restarted meter charges the rest
        from its mark) or a closed one, never charges without the close (charged twice on
        retry). Idempotent: when the row is already gone (closed before, by this or another
        meter), nothing is written and it returns False."""
        rows = [(c.job, c.queue, c.team, c.accelerator, c.start_s, c.end_s, c.gpu_seconds, c.cost_usd)
                for c in charges]
        with self._lock, self._transaction() as db:
            if db.execute("DELETE FROM meters WHERE job = ?", (job,)).rowcount == 0:
                return False
            db.executemany("INSERT INTO charges (job, queue, team, accelerator, start_s, end_s, "
                           "gpu_seconds, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT INTO events (ts, job, kind, reason, message) VALUES (?, ?, ?, ?, ?)",
                           list(events))
        _export(rows)
        return True

    # -- reads -----------------------------------------------------------------------------
    def charges(self, since_s: float | None = None, until_s: float | None = None) -> list[Charge]:
        sql, args = "SELECT job, queue, team, accelerator, start_s, end_s, gpu_seconds, cost_usd " \
                    "FROM charges WHERE end_s > ? AND start_s < ? ORDER BY end_s, id", \
                    (since_s if since_s is not None else float("-inf"),
                     until_s if until_s is not None else float("inf"))
        with self._lock:
            return [Charge(*row) for row in self._db.execute(sql, args)]

    def meters(self) -> list[tuple[JobSpec, float, float]]:
        """Jobs being metered: (spec, started_s, last_meter_s)."""
        with self._lock:
            rows = list(self._db.execute("SELECT spec, started_s, last_meter_s FROM meters"))
        return [(_spec_from_dict(json.loads(spec)), started, last) for spec, started, last in rows]

    def events(self, job: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT ts, job, kind, reason, message FROM events"
        args: tuple[Any, ...] = ()
        if job is not None:
            sql, args = sql + " WHERE job = ?", (job,)
        with self._lock:
            rows = list(self._db.execute(sql + " ORDER BY id", args))
        return [dict(zip(("ts", "job", "kind", "reason", "message"), row, strict=True)) for row in rows]

    def grouped(self, by: str, since_s: float | None, until_s: float | None) -> list[tuple[Any, ...]]:
        """(key, gpu_hours, cost_usd, charges, first_s, last_s) per ``by`` column over the window,
        charges straddling its ends counted pro rata; most expensive first."""
        if by not in ("team", "queue", "job", "accelerator"):
            raise errors.ConfigError(f"cannot group by {by!r}", field="by", value=by)
        window = {"lo": -1e300 if since_s is None else since_s, "hi": 1e300 if until_s is None else until_s}
        share = "((MIN(end_s, :hi) - MAX(start_s, :lo)) / (end_s - start_s))"
        sql = (f"SELECT COALESCE({by}, '(none)'), SUM(gpu_seconds * {share}) / 3600.0, "
               f"SUM(cost_usd * {share}), COUNT(*), MIN(start_s), MAX(end_s) FROM charges "
               f"WHERE end_s > :lo AND start_s < :hi AND end_s > start_s GROUP BY 1 ORDER BY 3 DESC, 1")
        with self._lock:
            return list(self._db.execute(sql, window))

    def total_usd(self) -> float:
        with self._lock:
            return float(self._db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM charges").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _export(rows: list[tuple[Any, ...]]) -> None:
    """Committed spend as Prometheus counters (inside a Ray process only; a no-op elsewhere)."""
    from ainative import observability as obs

    for _job, queue, team, accelerator, _s, _e, gpu_seconds, cost_usd in rows:
        tags = {"queue": str(queue or ""), "team": str(team or ""), "accelerator": str(accelerator or "")}
        obs.counter("cost_gpu_hours_total", gpu_seconds / 3600.0, description="GPU-hours charged", **tags)
        obs.counter("cost_usd_total", cost_usd, description="spend charged, USD", **tags)


def _spec_to_dict(job: JobSpec) -> dict[str, Any]:
    out = {name: getattr(job, name) for name in ("name", "queue", "team", "cpus", "max_runtime_s",
                                                 "expected_duration_s", "floor")}
    out["gpus"] = dict(job.gpus)
    for name in ("budget", "idle"):
        value = getattr(job, name)
        out[name] = None if value is None else {f: getattr(value, f) for f in value.__slots__}
    return out


def _spec_from_dict(data: dict[str, Any]) -> JobSpec:
    budget = pricing.Budget(**data["budget"]) if data.get("budget") else None
    idle = pricing.IdlePolicy(**data["idle"]) if data.get("idle") else None
    return JobSpec(name=data["name"], queue=data["queue"], team=data["team"], gpus=data["gpus"],
                   cpus=data["cpus"], max_runtime_s=data["max_runtime_s"],
                   expected_duration_s=data["expected_duration_s"], budget=budget, idle=idle,
                   floor=bool(data.get("floor", False)))

