"""The durable evidence writer: every accepted message is committed before ``250``.

Each accepted message becomes one ``evidence`` row (``channel="smtp"``, the raw bytes, the
envelope, the peer) in state ``pending``. The listener (:mod:`inbound.listener`) awaits
:meth:`EvidenceWriter.store_async` before answering ``250``; a failed write raises
:class:`~adapters.errors.StoreError`, which the listener answers ``451`` so the sending server
retries. One writer thread groups the messages that arrive together into one transaction (one
fsync for many senders). The classification thread (:mod:`inbound.classification`) takes the
``pending`` rows from there. See the README's "Mail in: the SMTP listener".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import queue
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.pool import PoolProxiedConnection

from adapters.errors import StoreError
from adapters.events import Source
from adapters.hub import Hub
from adapters.store import database
from adapters.store.bulk import driver_rows
from adapters.store.inbound_backlog import PENDING, SMTP_CHANNEL
from adapters.store.models import Evidence
from inbound.batches import take_batch

CONTENT_TYPE = "message/rfc822"
DONE, REVIEW = "done", "review"  # what a pending row becomes once classified
EVIDENCE_COLUMNS = ("channel", "source", "received_at", "content", "content_type", "meta", "state")
_EVIDENCE = Evidence.__table__


@dataclasses.dataclass(frozen=True)
class Received:
    """One message as the listener received it."""

    raw: bytes
    mail_from: str
    rcpt_tos: Sequence[str]
    peer: str
    helo: str | None
    received_at: datetime
    truncated: bool = False  # cut to max_message_bytes (a tokenized recipient's oversized mail)

    def values(self) -> list[Any]:
        """The ``evidence`` row, in the order of :data:`EVIDENCE_COLUMNS`."""
        meta: dict[str, Any] = {
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "peer": self.peer,
            "helo": self.helo,
        }
        if self.truncated:
            meta["truncated"] = True
        return [SMTP_CHANNEL, Source.SMTP.value, self.received_at, self.raw, CONTENT_TYPE, meta, PENDING]


class _Pending:
    """One message waiting for its commit: a thread blocks on ``done``, a coroutine awaits ``future``."""

    __slots__ = ("done", "error", "evidence_id", "future", "loop", "received")

    def __init__(
        self,
        received: Received,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[int] | None = None,
    ) -> None:
        self.received = received
        self.done = threading.Event() if future is None else None
        self.evidence_id: int | None = None
        self.error: BaseException | None = None
        self.loop = loop
        self.future = future

    def outcome(self) -> int:
        if self.error is not None:
            raise StoreError(f"could not store the message: {self.error.__class__.__name__}") from self.error
        assert self.evidence_id is not None
        return self.evidence_id


def _settle(items: list[_Pending]) -> None:
    """Resolve the futures of ``items`` (runs on their event loop)."""
    for item in items:
        assert item.future is not None
        if item.future.done():  # the SMTP session went away meanwhile
            continue
        try:
            item.future.set_result(item.outcome())
        except StoreError as exc:
            item.future.set_exception(exc)


class EvidenceWriter:
    """Durable writes with group commit, by one writer thread.

    Messages queue up while a commit is under way and are written together in the next
    transaction, so many concurrent senders share one fsync; the thread wakes the event loop
    once per batch. ``await store_async(...)`` (from the listener's loop) or ``store(...)``
    (from any thread) returns the evidence id once the row is committed, or raises
    :class:`StoreError`.

    The thread keeps one database connection of its own and talks to the driver directly:
    on this path SQLAlchemy's statement machinery cost about four times the database work,
    and every microsecond the writer holds the interpreter lock is taken from the listener.
    After a database error the connection is discarded and the next batch opens a fresh one.
    """

    def __init__(self, hub: Hub, *, max_batch: int = 256) -> None:
        self.hub = hub
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._connection: PoolProxiedConnection | None = None  # used by the writer thread only
        sqlite = hub.engine.dialect.name == "sqlite"
        mark = "?" if sqlite else "%s"
        columns, marks = ", ".join(EVIDENCE_COLUMNS), ", ".join([mark] * len(EVIDENCE_COLUMNS))
        self._insert_sql = f"INSERT INTO {Evidence.__tablename__} ({columns}) VALUES ({marks})"
        self._sqlite = sqlite

    def _ensure_running(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="smtp-evidence-writer", daemon=True)
                    self._thread.start()

    def store(self, received: Received) -> int:
        item = _Pending(received)
        self._ensure_running()
        self._queue.put(item)
        assert item.done is not None
        item.done.wait()
        return item.outcome()

    async def store_async(self, received: Received) -> int:
        """The evidence id once committed. Cancelling the caller abandons only the wait: the
        row is still written (and classified), as the sender may have finished sending."""
        loop = asyncio.get_running_loop()
        item = _Pending(received, loop, loop.create_future())
        self._ensure_running()
        self._queue.put(item)
        assert item.future is not None
        return await item.future

    def close(self) -> None:
        """Write what is queued, then stop the thread and give its connection back."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch, stop = take_batch(self._queue, first, self.max_batch)
                self._write(batch)
                if stop:
                    return
        finally:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _insert(self, rows: list[list[Any]]) -> list[int]:
        """Insert ``rows`` in one committed transaction; their ids, in order."""
        if self._connection is None:
            self._connection = self.hub.engine.raw_connection()
        connection = self._connection
        dbapi = connection.driver_connection
        assert dbapi is not None  # a pooled connection that is open
        try:
            with contextlib.closing(dbapi.cursor()) as cursor:
                if self._sqlite:  # autocommit driver mode (see adapters.store.database): the transaction is ours
                    database.begin_write(dbapi)
                    before = cursor.execute(f"SELECT coalesce(max(id), 0) FROM {Evidence.__tablename__}").fetchone()[0]
                    cursor.executemany(self._insert_sql, rows)
                    dbapi.commit()  # durable when it returns
                    # the write lock was held: SQLite numbered the rows after the largest id, in order
                    return list(range(before + 1, before + 1 + len(rows)))
                cursor.executemany(self._insert_sql + " RETURNING id", rows, returning=True)
                ids = []
                while True:  # one result per row, in the order of the rows
                    ids.append(cursor.fetchone()[0])
                    if not cursor.nextset():
                        break
            dbapi.commit()
            return ids
        except BaseException:
            self._connection = None
            with contextlib.suppress(Exception):
                dbapi.rollback()  # release the write lock now, not when the connection is collected
            connection.invalidate()  # a fresh connection for the next batch
            raise

    def _write(self, batch: list[_Pending]) -> None:
        try:
            rows = driver_rows(self.hub.engine, _EVIDENCE, EVIDENCE_COLUMNS, [item.received.values() for item in batch])
            ids = self._insert(rows)
        except Exception as exc:  # every waiter must learn the outcome
            for item in batch:
                item.error = exc
        else:
            for item, evidence_id in zip(batch, ids, strict=True):
                item.evidence_id = evidence_id
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for item in batch:
            if item.done is not None:
                item.done.set()
            if item.loop is not None:
                by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, items)
