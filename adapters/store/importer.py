"""Bulk import of an existing suppression list: a CSV file, such as a provider's export.

Imports only ever add opt-outs. Each row becomes an event whose provider event id is derived
from (kind, scope, address), so importing the same file twice stores nothing new. Extra
columns are kept as the event's metadata.

The address column is ``--column NAME`` when given, else the first column named (case and
surrounding spaces ignored) as one of :data:`EMAIL_COLUMNS`, the headers of the providers'
own exports of their unsubscribed or suppressed contacts:

- Mailchimp: ``Email Address`` (the audience export, and the CSV of a saved segment of
  unsubscribed contacts: mailchimp.com/help/view-unsubscribed-contacts/,
  mailchimp.com/help/format-guidelines-for-your-import-file/);
- SendGrid: ``email`` (the suppression lists' CSV download, the same fields as
  ``GET /v3/suppression/unsubscribes``: ``email``, ``created``;
  twilio.com/docs/sendgrid/api-reference/suppressions-global-suppressions/);
- HubSpot: ``Email`` (the "Export unsubscribes and bounces" file beside ``Portal
  Unsubscribe``, ``Portal Bounce``...; and the opt-out list format:
  knowledge.hubspot.com/contacts/import-an-opt-out-list);
- Constant Contact: ``Email address`` in its contact exports (``EMAIL ADDRESS`` in older
  ones), ``Email`` in some (knowledgebase.constantcontact.com, articles 5636 and 33118).

Encoding (:func:`detect_encoding`): a UTF-8 file, with or without a byte-order mark, is read
as UTF-8; any other file as Windows-1252 (what Excel on Western Windows saves as "CSV", a
superset of Latin-1's printable characters), or Latin-1 when it holds the five bytes
Windows-1252 leaves undefined. ``--encoding`` overrides the guess; bytes the chosen encoding
cannot read become U+FFFD, so their line is reported bad, never a traceback.

``origin`` (``--source``) naming a provider records the rows as that provider's events
(source the provider, actor ``import``): the store never pushes an event back to the provider
it came from, so the list is not echoed to where it came from, and the other providers still
get it. Any other name is kept as ``origin`` in each event's metadata. ``push=False``
(``--no-push``) queues no push at all: a plain local backfill.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import BinaryIO, TextIO, cast

from adapters.addresses import normalize_address
from adapters.consent import PROVIDER_SOURCES
from adapters.errors import AddressError, PayloadError
from adapters.events import GLOBAL_SCOPE, Actor, Kind, OptOutEvent, Source, Verification
from adapters.hub import Hub
from adapters.store.record import record_events

BATCH = {"sqlite": 25_000, "postgresql": 5_000}
"""Rows per transaction, per database. On SQLite each batch's inserts at random keys (the
address indexes) rewrite the index pages they touch once per commit, so larger batches write
far less: a 1,000,000-row import takes ~61 s at 10,000 and ~53 s at 25,000 (bench/store.py),
for ~30 MB more memory and the write lock held ~1 s per batch (other writers queue
meanwhile). On PostgreSQL a batch holds one advisory lock per address until it commits
(:mod:`adapters.store.address_locks`), and the server's lock table has room for
``max_locks_per_transaction`` x ``max_connections`` locks in all (6,400 by default), shared
with every other transaction."""
EMAIL_COLUMNS = ("email", "email address")
"""Address column names, lower-cased, in order of preference (see the module docstring)."""
SHOWN_INVALID = 20  # bad lines listed in the summary line; the rest are counted


@dataclasses.dataclass
class ImportSummary:
    imported: int = 0  # addresses newly suppressed
    duplicates: int = 0  # repeated in the file, or already suppressed at that scope
    invalid: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, reason)

    def line(self) -> str:
        text = f"imported {self.imported}, duplicates {self.duplicates}, invalid {len(self.invalid)}"
        if self.invalid:
            shown = ", ".join(f"line {n}: {why}" for n, why in self.invalid[:SHOWN_INVALID])
            extra = len(self.invalid) - SHOWN_INVALID
            text += f" ({shown}{f', and {extra} more' if extra > 0 else ''})"
        return text


def email_column(columns: list[str], wanted: str | None = None) -> int:
    """The index of the address column in a header row (``wanted``: ``--column``)."""
    names = [c.strip().lower() for c in columns]
    for name in [wanted.strip().lower()] if wanted else EMAIL_COLUMNS:
        if name in names:
            return names.index(name)
    found = ", ".join(repr(c) for c in columns) or "none"
    if wanted:
        raise PayloadError(f"the CSV file has no {wanted!r} column (columns: {found})")
    raise PayloadError(f"the CSV file has no 'email' or 'Email Address' column (columns: {found}); see --column")


def import_csv(
    hub: Hub,
    stream: TextIO,
    *,
    kind: Kind = Kind.UNSUBSCRIBE,
    scope: str = GLOBAL_SCOPE,
    origin: str | None = None,
    column: str | None = None,
    push: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import every row of ``stream``; ``progress`` is called with the rows read so far.

    A line that cannot be imported (no address, not an address, broken CSV) is reported with
    its number in the summary and the import goes on.
    """
    if kind is Kind.RESUBSCRIBE:
        raise PayloadError("an import cannot resubscribe anyone")
    source = Source(origin) if origin in PROVIDER_SOURCES else Source.IMPORT
    base: dict[str, str] = {}
    if source is not Source.IMPORT:
        base["actor"] = Actor.IMPORT.value
    elif origin:
        base["origin"] = origin
    policy = hub.policy if push else dataclasses.replace(hub.policy, push_targets=lambda scope: ())
    reader = csv.reader(stream)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise PayloadError(f"line 1: {exc}") from None
    columns = [name.strip() for name in header or ()]
    email_at = email_column(columns, column)
    extras = [(i, name) for i, name in enumerate(columns) if i != email_at]
    summary = ImportSummary()
    seen: set[str] = set()
    shared: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    batch: list[OptOutEvent] = []
    batch_size = BATCH.get(hub.engine.dialect.name, min(BATCH.values()))
    rows = 0
    now = hub.clock()

    def flush() -> None:
        if batch:
            result = hub.record_with(lambda session: record_events(session, batch, policy, now=hub.clock()))
            summary.imported += result.changed
            summary.duplicates += len(batch) - result.changed
            batch.clear()
        shared.clear()
        if progress:
            progress(rows)

    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            summary.invalid.append((first_line, str(exc)))
            continue
        if not row:
            continue  # a blank line
        rows += 1
        if email_at >= len(row):
            summary.invalid.append((first_line, f"no {columns[email_at]!r} field"))
            continue
        try:
            address = normalize_address(row[email_at])
        except AddressError as exc:
            summary.invalid.append((first_line, str(exc)))
            continue
        if address.key in seen:
            summary.duplicates += 1
            continue
        seen.add(address.key)
        extra = {name: row[i] for i, name in extras if i < len(row) and row[i]}
        extra.update(base)
        extra = shared.setdefault(tuple(extra.items()), extra)  # one object per distinct value
        pid = hashlib.sha256(f"{kind.value}\x00{scope}\x00{address.key}".encode()).hexdigest()[:40]
        batch.append(
            OptOutEvent(
                email=address.email,
                kind=kind,
                source=source,
                scope=scope,
                verification=Verification.NONE,
                provider_event_id=pid,
                occurred_at=now,
                received_at=now,
                metadata=extra or None,
            )
        )
        if len(batch) >= batch_size:
            flush()
    flush()
    return summary


def detect_encoding(data: BinaryIO, chunk: int = 1 << 20) -> str:
    """The encoding to read ``data`` with (see the module docstring); rewinds ``data``."""
    utf8, cp1252 = codecs.getincrementaldecoder("utf-8")(), codecs.getincrementaldecoder("cp1252")()
    candidates = {"utf-8-sig": utf8, "cp1252": cp1252}
    while candidates and (block := data.read(chunk)):
        for name, decoder in list(candidates.items()):
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                del candidates[name]
    for name, decoder in list(candidates.items()):
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            del candidates[name]
    data.seek(0)
    return next(iter(candidates), "latin-1")


def open_csv(path: str, encoding: str | None = None) -> TextIO:
    """Open a CSV file (``-``: standard input) as text in ``encoding``, else the one
    :func:`detect_encoding` finds; the text stream's ``encoding`` says which."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise PayloadError(f"unknown encoding {encoding!r}") from None
    raw: BinaryIO
    if path == "-":  # read twice (guess, then import): kept in memory, or a temporary file if large
        raw = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=64 << 20))  # noqa: SIM115 (closed with the text)
        shutil.copyfileobj(sys.stdin.buffer, raw)
        raw.seek(0)
    else:
        raw = open(path, "rb")  # noqa: SIM115 (closed with the text stream)
    if encoding is None:
        encoding = detect_encoding(raw)
    elif codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # a byte-order mark is never part of the first column's name
    return io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
