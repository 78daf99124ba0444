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

from .addresses import normalize_address
from .errors import AddressError, PayloadError
from .events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification
from .hub import Hub

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
    reader = csv.DictReader(stream)
    if reader.fieldnames is None or "email" not in [f.strip().lower() for f in reader.fieldnames]:
        raise PayloadError("the CSV file has no 'email' column")
    email_col = next(f for f in reader.fieldnames if f.strip().lower() == "email")
    summary = ImportSummary()
    seen: set[str] = set()
    batch: list[OptOutEvent] = []
    rows = 0
    now = hub.clock()
    for row in reader:
        rows += 1
        try:
            address = normalize_address(row.get(email_col) or "")
        except AddressError as exc:
            summary.invalid.append((reader.line_num, str(exc)))
            continue
        if address.key in seen:
            summary.duplicates += 1
            continue
        seen.add(address.key)
        extra = {k: v for k, v in row.items() if k != email_col and k is not None and v}
        if origin:
            extra["origin"] = origin
        pid = hashlib.sha256(f"{kind.value}\x00{scope}\x00{address.key}".encode()).hexdigest()[:40]
        batch.append(OptOutEvent(email=address.email, kind=kind, source=Source.IMPORT, scope=scope, verification=Verification.NONE, provider_event_id=pid, occurred_at=now, received_at=now, metadata=extra or None))
        if len(batch) >= BATCH:
            _flush(hub, batch, summary)
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
    return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - the caller closes it
