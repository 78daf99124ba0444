"""Bulk import of an existing suppression list (CSV with an ``email`` column).

Imports only ever add opt-outs. Each row becomes an ``import`` event whose provider event id
is derived from (kind, scope, address), so importing the same file twice stores nothing new.
Extra columns are kept as the event's metadata.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import sys
from collections.abc import Callable
from typing import TextIO

from adapters.addresses import normalize_address
from adapters.errors import AddressError, PayloadError
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification
from adapters.hub import Hub

BATCH = 10_000  # rows per transaction: fewer fsyncs, bounded memory


@dataclasses.dataclass
class ImportSummary:
    imported: int = 0  # addresses newly suppressed
    duplicates: int = 0  # repeated in the file, or already suppressed at that scope
    invalid: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, reason)

    def line(self) -> str:
        text = f"imported {self.imported}, duplicates {self.duplicates}, invalid {len(self.invalid)}"
        if self.invalid:
            shown = ", ".join(f"line {n}: {why}" for n, why in self.invalid[:20])
            more = f", and {len(self.invalid) - 20} more" if len(self.invalid) > 20 else ""
            text += f" ({shown}{more})"
        return text


def import_csv(
    hub: Hub,
    stream: TextIO,
    *,
    kind: Kind = Kind.UNSUBSCRIBE,
    scope: str = GLOBAL_SCOPE,
    origin: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import every row of ``stream``; ``progress`` is called with the rows read so far."""
    if kind is Kind.RESUBSCRIBE:
        raise PayloadError("an import cannot resubscribe anyone")
    reader = csv.reader(stream)
    header = next(reader, None)
    columns = [name.strip() for name in header or ()]
    if "email" not in [c.lower() for c in columns]:
        raise PayloadError("the CSV file has no 'email' column")
    email_at = [c.lower() for c in columns].index("email")
    extras = [(i, name) for i, name in enumerate(columns) if i != email_at]
    summary = ImportSummary()
    seen: set[str] = set()
    shared: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    batch: list[OptOutEvent] = []
    rows = 0
    now = hub.clock()
    for row in reader:
        if not row:
            continue  # a blank line
        rows += 1
        try:
            address = normalize_address(row[email_at] if email_at < len(row) else "")
        except AddressError as exc:
            summary.invalid.append((reader.line_num, str(exc)))
            continue
        if address.key in seen:
            summary.duplicates += 1
            continue
        seen.add(address.key)
        extra = {name: row[i] for i, name in extras if i < len(row) and row[i]}
        if origin:
            extra["origin"] = origin
        extra = shared.setdefault(tuple(extra.items()), extra)  # one object per distinct value
        pid = hashlib.sha256(f"{kind.value}\x00{scope}\x00{address.key}".encode()).hexdigest()[:40]
        batch.append(
            OptOutEvent(
                email=address.email,
                kind=kind,
                source=Source.IMPORT,
                scope=scope,
                verification=Verification.NONE,
                provider_event_id=pid,
                occurred_at=now,
                received_at=now,
                metadata=extra or None,
            )
        )
        if len(batch) >= BATCH:
            _flush(hub, batch, summary)
            shared.clear()
            if progress:
                progress(rows)
    _flush(hub, batch, summary)
    if progress:
        progress(rows)
    return summary


def _flush(hub: Hub, batch: list[OptOutEvent], summary: ImportSummary) -> None:
    if not batch:
        return
    result = hub.record(batch)
    summary.imported += result.changed
    summary.duplicates += len(batch) - result.changed
    batch.clear()


def open_csv(path: str) -> TextIO:
    """Open a CSV file as text, tolerating a UTF-8 byte-order mark."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")
