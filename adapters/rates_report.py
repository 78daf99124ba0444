"""``report rates`` as people read it: the date range, and a :class:`~adapters.store.rates.RateTable`
as text, CSV or JSON (README "Analytics"). Pure: the CLI and ``/admin`` pass tables in.

Rates and shares are percentages; a rate over no recipients is "—" in text, empty in CSV and
``null`` in JSON. CSV cells that a spreadsheet would run as a formula are quoted with ``'``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from adapters.errors import PayloadError
from adapters.store.rates import RateTable

DEFAULT_DAYS = 30
MAX_DAYS = 3660
PERCENT_COLUMNS = frozenset({"share", "rate", "complaint_rate"})
HEADERS = {
    "key": "code",
    "label": "label",
    "group": "group",
    "opt_outs": "opt-outs",
    "share": "share",
    "recipients": "recipients",
    "rate": "rate",
    "outside": "non-recipients",
    "complaints": "complaints",
    "complaint_rate": "complaint rate",
}
NO_RATE = "—"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def date_range(since: str | None, until: str | None, *, today: date) -> tuple[date, date]:
    """The UTC days to report, both included: ``until`` defaults to today, ``since`` to 30
    days up to ``until``. Dates are ISO ``YYYY-MM-DD`` (a time after them is ignored)."""
    last = _day(until, "until") if until else today
    first = _day(since, "since") if since else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise PayloadError("since must not be after until")
    if (last - first).days >= MAX_DAYS:
        raise PayloadError(f"the range may cover at most {MAX_DAYS} days")
    return first, last


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise PayloadError(f"{name}: not an ISO date (YYYY-MM-DD): {text[:40]!r}") from None


def header(by: str, column: str) -> str:
    """A column's heading; the kind table counts every event, resubscribes too."""
    name = "events" if (by, column) == ("kind", "opt_outs") else HEADERS[column]
    return name + (" %" if column in PERCENT_COLUMNS else "")


def percent(value: float | None) -> str:
    return NO_RATE if value is None else f"{100 * value:.1f}%"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in PERCENT_COLUMNS:
        return f"{100 * value:.2f}"
    return str(value)


def _safe(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def to_csv(table: RateTable) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header(table.by, c) for c in table.columns])
    for row in table.rows:
        writer.writerow([_safe(_cell(c, row.value(c))) for c in table.columns])
    return out.getvalue()


def to_json(tables: Sequence[RateTable]) -> dict[str, Any]:
    """Fractions, not percentages, in JSON (``null`` for a rate over no recipients)."""
    return {
        "since": tables[0].since.isoformat() if tables else None,
        "until": tables[0].until.isoformat() if tables else None,
        "tables": {t.by: [{c: row.value(c) for c in t.columns} for row in t.rows] for t in tables},
    }


def to_text(table: RateTable) -> str:
    cells = [[header(table.by, c).removesuffix(" %") for c in table.columns]]
    for row in table.rows:
        value = row.value
        cells.append([percent(value(c)) if c in PERCENT_COLUMNS else str(value(c)) for c in table.columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.columns))]
    numeric = [c not in ("key", "label", "group") for c in table.columns]
    lines = [f"by {table.by}, {table.since.isoformat()} to {table.until.isoformat()}"]
    for r in cells:
        lines.append(
            "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(r, widths, numeric, strict=True)).rstrip()
        )
    if not table.rows:
        lines.append("(nothing in this range)")
    return "\n".join(lines) + "\n"


def render(tables: Sequence[RateTable], fmt: str) -> str:
    """``text`` (every table), ``csv`` (the first table) or ``json`` (every table)."""
    if fmt == "json":
        return json.dumps(to_json(tables), ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        return to_csv(tables[0])
    return "\n".join(to_text(t) for t in tables)
