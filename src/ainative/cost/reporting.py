"""Spend reports from the ledger: ``ai.cost.report(by="team", since="2026-11-01")``.

Rows are summed straight from the ledger's charge rows in SQL; a charge that straddles ``since``
or ``until`` counts pro rata, so with no window the totals are exactly the sum of the rows.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from typing import Any

from ainative import errors
from ainative.cost import ledger as ledger_mod

GROUPS = ("team", "queue", "job", "accelerator")
COLUMNS = ("key", "gpu_hours", "cost_usd", "charges", "first_s", "last_s")


def parse_time(value: str | float | int | dt.datetime | dt.date | None, field: str = "since") -> float | None:
    """ISO date/time (UTC when no zone), a datetime/date, epoch seconds, or relative "7d"/"12h"."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise errors.ConfigError(f"{field} must be a date, got {value!r}", field=field, value=value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).timestamp()
    if isinstance(value, str):
        text = value.strip()
        units = {"d": 86400, "h": 3600, "m": 60}
        if len(text) > 1 and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
            return dt.datetime.now(dt.timezone.utc).timestamp() - float(text[:-1]) * units[text[-1]]
        try:
            return parse_time(dt.datetime.fromisoformat(text), field)
        except ValueError:
            pass
    raise errors.ConfigError(
        f"{field} must be an ISO date such as '2026-11-01' (or '2026-11-01T12:00', '7d', '12h', epoch "
        f"seconds), got {value!r}", field=field, value=value)


@dataclasses.dataclass(frozen=True, slots=True)
class CostReport:
    """Rows of spend grouped by ``by``; iterate for dicts, or use table() / to_csv() / to_json()."""

    by: str
    since_s: float | None
    until_s: float | None
    rows: tuple[dict[str, Any], ...]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total_usd(self) -> float:
        return sum(r["cost_usd"] for r in self.rows)

    @property
    def total_gpu_hours(self) -> float:
        return sum(r["gpu_hours"] for r in self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[self.by, *COLUMNS[1:]], lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({self.by: row["key"], **{k: row[k] for k in COLUMNS[1:]}})
        return out.getvalue()

    def to_json(self) -> str:
        return json.dumps({"by": self.by, "since_s": self.since_s, "until_s": self.until_s,
                           "total_usd": self.total_usd, "total_gpu_hours": self.total_gpu_hours,
                           "rows": self.to_dicts()}, indent=2)

    def table(self) -> str:
        head = f"{self.by:<24} {'GPU-hours':>12} {'cost USD':>12} {'charges':>8}"
        lines = [head, "-" * len(head)]
        lines += [f"{str(r['key']):<24} {r['gpu_hours']:>12.3f} {r['cost_usd']:>12.2f} {r['charges']:>8}"
                  for r in self.rows]
        lines += ["-" * len(head),
                  f"{'total':<24} {self.total_gpu_hours:>12.3f} {self.total_usd:>12.2f}"]
        return "\n".join(lines)


def report(by: str = "team", since: Any = None, until: Any = None,
           path: str | os.PathLike[str] | None = None) -> CostReport:
    """Spend grouped by "team", "queue", "job" or "accelerator" over ``[since, until)``, from the
    ledger at ``path`` (default ``$AINATIVE_LEDGER`` or ``~/.ainative/ledger.sqlite``)."""
    if by not in GROUPS:
        raise errors.ConfigError(f"report by must be one of {', '.join(GROUPS)}; got {by!r}",
                                 field="by", value=by)
    since_s, until_s = parse_time(since, "since"), parse_time(until, "until")
    ledger = ledger_mod.Ledger(path)
    try:
        rows = ledger.grouped(by, since_s, until_s)
    finally:
        ledger.close()
    return CostReport(by=by, since_s=since_s, until_s=until_s,
                      rows=tuple(dict(zip(COLUMNS, row, strict=True)) for row in rows))
