"""Engines, sessions and schema migrations for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import time
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_SECONDS = 30  # how long a SQLite transaction waits for the write lock
WRITER_POLL_SECONDS = 0.001


class _QueuedWriter(sqlite3.Connection):
    """A SQLite connection in WAL mode whose transactions first take ``<database>-writer``, a
    lock file released the moment the transaction commits or rolls back, and whose commits
    are made durable after that lock is released (group commit).

    Every transaction here takes SQLite's write lock (``BEGIN IMMEDIATE``), and SQLite's own
    busy handler sleeps 1, 2, 5 ... 100 ms between tries, so a waiting writer mostly wakes long
    after the lock was freed; under two gunicorn workers that idle gap cost a third of the
    webhook throughput (bench/webhooks.py). A waiter here retries the lock file every
    millisecond instead, up to the same busy timeout, then fails as SQLite would ("database is
    locked"). Processes that do not take the file (the ``sqlite3`` shell, a backup) still meet
    SQLite's own lock.

    **Durability.** With ``synchronous=FULL`` SQLite fsyncs the WAL inside COMMIT, while it
    still holds the write lock: every other writer waits for the disk too. Here the
    connection runs ``synchronous=NORMAL`` (COMMIT writes the WAL frames, checkpoints still
    sync) and :meth:`commit` fsyncs the WAL itself, after releasing both locks and before
    returning: the caller still acknowledges nothing that is not on disk, and the next writer
    runs while this one's fsync is under way. The WAL is appended in commit order, so the
    fsync also covers every transaction committed before; one a checkpoint has already
    copied into the database file was synced there by the checkpoint. Another connection can
    read a commit during its fsync's few milliseconds, but every transaction here ends with
    the same fsync, rolled back or read-only ones included (one of a clean file costs tens of
    microseconds), so no answer built on what a transaction read leaves before that is on
    disk too. The first sync of each connection also fsyncs the directory, so that a WAL
    file created since is found after a power loss (SQLite's own first sync of a new WAL
    would).
    """

    def __init__(self, *args: Any, lock_path: str, wal_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._close_lock_file = weakref.finalize(self, os.close, self._lock_fd)  # once: close() or GC
        self._held = False
        self._wal_path = wal_path
        self._directory_synced = False
        self.syncs_wal = False  # set by make_engine once the connection is in WAL mode, synchronous=NORMAL

    def take_writer_lock(self) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OperationalError(
                        "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
                    ) from None
                time.sleep(WRITER_POLL_SECONDS)
            else:
                self._held = True
                return

    def _release_writer_lock(self) -> None:
        if self._held:
            self._held = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        held = self._held
        try:
            super().commit()
        finally:
            self._release_writer_lock()
        if held and self.syncs_wal:
            self._sync_wal()

    def _sync_wal(self) -> None:
        """fsync the WAL (and once, its directory); a failure is the transaction's failure, so
        the caller answers 503 / 451 and the sender retries (the retry is deduplicated)."""
        paths = [self._wal_path] if self._directory_synced else [self._wal_path, os.path.dirname(self._wal_path) or "."]
        try:
            for path in paths:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise sqlite3.OperationalError(f"could not sync the write-ahead log: {exc.strerror}") from exc
        self._directory_synced = True

    def rollback(self) -> None:
        held = self._held
        try:
            super().rollback()
        finally:
            self._release_writer_lock()
        if held and self.syncs_wal:  # what it read may be another's commit still syncing
            self._sync_wal()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._held = False
            self._close_lock_file()  # closing the file frees its lock


def begin_write(dbapi_conn: DBAPIConnection) -> None:
    """Begin a write transaction directly on the driver connection of one of
    :func:`make_engine`'s SQLite engines (autocommit mode), as its own transactions begin:
    the writer queue's lock file first when it has one, then SQLite's write lock. End it with
    the connection's ``commit()`` or ``rollback()``, never a bare ``COMMIT`` statement, so
    that the lock file is released and the commit made durable."""
    if isinstance(dbapi_conn, _QueuedWriter):
        dbapi_conn.take_writer_lock()
    dbapi_conn.cursor().execute("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite gets WAL, a busy timeout, an fsync per commit and
    write-locking transactions (``BEGIN IMMEDIATE``), so that several threads and processes
    queue instead of failing with "database is locked" half-way through a transaction; on a
    database file they queue on :class:`_QueuedWriter`'s lock file first, and each commit's
    fsync runs after the lock is released."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        connect_args: dict[str, Any] = {
            "isolation_level": None,
            "timeout": BUSY_TIMEOUT_SECONDS,
            "check_same_thread": False,
        }
        if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
            connect_args["factory"] = functools.partial(
                _QueuedWriter, lock_path=f"{parsed.database}-writer", wal_path=f"{parsed.database}-wal"
            )
        engine = create_engine(url, connect_args=connect_args)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            wal = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
            # a queued writer syncs the WAL itself after each commit (see _QueuedWriter)
            if wal and isinstance(dbapi_conn, _QueuedWriter):
                cur.execute("PRAGMA synchronous=NORMAL")
                dbapi_conn.syncs_wal = True
            else:
                cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: index inserts at random keys stay in memory
            # Checkpoint every ~40 MiB of WAL, not 4 MiB: a page that several commits rewrote in
            # the meantime (index leaves, the tables' last pages) is copied to the database once.
            cur.execute("PRAGMA wal_autocheckpoint=10000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            dbapi_conn = conn.connection.dbapi_connection
            if isinstance(dbapi_conn, _QueuedWriter):
                dbapi_conn.take_writer_lock()
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # a failure here is wrapped as SQLAlchemy's

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """The schema's current Alembic revision (``None`` before ``db upgrade``) and the newest
    this code knows."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision(), head


def server_time(engine: Engine) -> datetime | None:
    """The database server's clock (PostgreSQL), or ``None`` when the database has no clock of
    its own (SQLite runs in this process)."""
    if engine.dialect.name == "sqlite":
        return None
    with engine.connect() as conn:
        value = conn.execute(text("SELECT now()")).scalar_one()
    return value if isinstance(value, datetime) else None


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
