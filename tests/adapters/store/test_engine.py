"""SQLite engines: transactions queue on the writer lock file, nothing can leave it held, and a
commit returns once its WAL is synced, the lock already released for the next writer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from adapters.store import database


@pytest.fixture
def db_file(tmp_path: Path) -> str:
    return str(tmp_path / "hub.db")


def _engine(path: str) -> Engine:
    engine = database.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS log (who TEXT)"))
    return engine


def _rows(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT who FROM log ORDER BY rowid")))


def test_a_writer_waits_for_the_open_transaction_then_writes_after_it(db_file: str) -> None:
    first, second = _engine(db_file), _engine(db_file)
    waiting = threading.Event()
    done: list[str] = []

    def write_second() -> None:
        waiting.set()
        with second.begin() as conn:
            conn.execute(text("INSERT INTO log VALUES ('second')"))
        done.append("second")

    with first.begin() as conn:
        conn.execute(text("INSERT INTO log VALUES ('first')"))
        thread = threading.Thread(target=write_second)
        thread.start()
        waiting.wait()
        thread.join(0.3)
        assert thread.is_alive() and not done  # queued behind the open transaction
    thread.join(10)
    assert done == ["second"]
    assert _rows(first) == ["first", "second"]


def test_a_transaction_that_fails_or_a_closed_connection_frees_the_lock(db_file: str) -> None:
    engine = _engine(db_file)
    with pytest.raises(ZeroDivisionError), engine.begin() as conn:
        conn.execute(text("INSERT INTO log VALUES ('rolled back')"))
        1 / 0  # noqa: B018
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO log VALUES ('never committed')"))
    conn.invalidate()  # the driver connection is closed without a commit or rollback
    other = _engine(db_file)
    with other.begin() as c:
        c.execute(text("INSERT INTO log VALUES ('after')"))
    assert _rows(other) == ["after"]


def test_a_writer_gives_up_after_the_busy_timeout_as_sqlite_would(
    db_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, waiter = _engine(db_file), _engine(db_file)
    monkeypatch.setattr(database, "BUSY_TIMEOUT_SECONDS", 0.2)
    with holder.begin() as conn:
        conn.execute(text("INSERT INTO log VALUES ('held')"))
        with pytest.raises(OperationalError, match="database is locked"), waiter.begin() as c:
            c.execute(text("INSERT INTO log VALUES ('too late')"))
    with waiter.begin() as c:  # the failed wait left nothing held
        c.execute(text("INSERT INTO log VALUES ('later')"))
    assert _rows(waiter) == ["held", "later"]


HOLD = """
import sys, time
from sqlalchemy import text
from adapters.store import database
engine = database.make_engine(f"sqlite:///{sys.argv[1]}")
with engine.begin() as conn:
    conn.execute(text("INSERT INTO log VALUES ('killed')"))
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_killed_process_holding_the_lock_frees_it_and_loses_its_transaction(db_file: str) -> None:
    engine = _engine(db_file)
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, db_file], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3]
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
            holder.kill()
            holder.wait(10)
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO log VALUES ('after')"))
        finally:
            holder.kill()
    assert _rows(engine) == ["after"]


def test_in_memory_and_uri_databases_need_no_lock_file(tmp_path: Path) -> None:
    for url in ("sqlite://", f"sqlite:///file:{tmp_path / 'u.db'}?mode=rwc&uri=true"):
        engine = database.make_engine(url)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: SQLite syncs in COMMIT
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith("-writer")] == []


class _SlowWalSync:
    """``os.fsync`` as the engine calls it, recording the files synced; a WAL sync waits for
    ``release`` while ``hold`` is set (a slow disk), with ``syncing`` set meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: list[str] = []
        self.hold = False
        self.syncing, self.release = threading.Event(), threading.Event()
        self._fsync = os.fsync
        monkeypatch.setattr(database.os, "fsync", self)

    def __call__(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith("-wal") and self.hold:
            self.syncing.set()
            assert self.release.wait(10)
        self._fsync(fd)
        self.synced.append(path)


def test_a_commit_returns_once_the_wal_is_synced_and_the_next_transactions_run_meanwhile(
    db_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _SlowWalSync(monkeypatch)
    first, second = _engine(db_file), _engine(db_file)  # each connection's first commit syncs the directory
    disk.hold = True
    returned: list[str] = []

    def write_first() -> None:
        with first.begin() as conn:
            conn.execute(text("INSERT INTO log VALUES ('first')"))
        returned.append("first")

    thread = threading.Thread(target=write_first)
    thread.start()
    assert disk.syncing.wait(10)  # the first commit is in its fsync ...
    disk.hold = False
    with second.begin() as conn:  # ... and holds neither lock: the next writer commits now
        conn.execute(text("INSERT INTO log VALUES ('second')"))
    assert returned == []  # the first has not returned: nothing is acknowledged before its sync
    wal, synced = f"{db_file}-wal", len(disk.synced)
    with second.connect() as conn:  # a reader sees the first commit already ...
        assert list(conn.scalars(text("SELECT who FROM log ORDER BY rowid"))) == ["first", "second"]
    assert disk.synced[synced:] == [wal]  # ... and its transaction (rolled back) ends with the same sync
    disk.release.set()
    thread.join(10)
    assert returned == ["first"]
    assert _rows(first) == ["first", "second"]
    assert disk.synced.count(wal) >= 3 and str(Path(db_file).parent) in disk.synced
    with first.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL: the commit syncs itself


def test_a_wal_that_cannot_be_synced_fails_the_commit_and_frees_the_lock(
    db_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(db_file)

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(database.os, "fsync", broken)
    unsure = pytest.raises(OperationalError, match="could not sync the write-ahead log: Input/output error")
    with unsure, engine.begin() as conn:
        conn.execute(text("INSERT INTO log VALUES ('unsure')"))
    monkeypatch.undo()
    with engine.begin() as conn:  # the lock file was released before the sync
        conn.execute(text("INSERT INTO log VALUES ('next')"))
    assert _rows(engine) == ["unsure", "next"]  # committed, but its sender was told it failed (and retries)
