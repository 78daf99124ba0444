"""Store throughput on this machine, each figure beside a bare baseline measured in the same run.

    python bench/store.py [--database-url URL] [--events 100000] [--check 100000] [--import-rows 1000000]
                          [--outbox 100000]

- record: events/s stored through ``record_events`` in 1,000-event batches (one transaction
  each: events + suppressions), against a plain ``executemany`` into a one-column table;
- check: addresses/s answered by ``check_addresses`` for one 100,000-address call (half of
  them suppressed), against a plain ``SELECT ... IN`` of the same keys;
- import: rows/s of ``import_csv`` over a generated CSV (target: 1 million rows < 60 s);
- outbox: the outbox's size (table and indexes: SQLite's ``dbstat``, PostgreSQL's
  ``pg_total_relation_size`` after a plain ``VACUUM``) per 100,000 opt-outs settled at three
  providers, before and after compaction moves them to ``push_confirmations``.

Addresses and event ids are scattered as real ones are (``bench/keys.py``). The default
database is a fresh SQLite file in a temporary directory (WAL, each commit fsynced).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keys
from sqlalchemy import text

from adapters.config import parse_config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.runtime import tune_gc
from adapters.store.compaction import compact_settled
from adapters.store.importer import import_csv
from adapters.store.queries import check_addresses
from adapters.store.record import record_events
from adapters.worker.outbox import worker_id

BATCH = 1000
BARE_IN_CHUNK = 20_000  # bound parameters per plain IN list (SQLite's variable limit is 32,766)


def open_hub(url: str) -> Hub:
    config = parse_config({}, {"OPTOUT_HUB_SECRET": "bench-secret-0123456789abcdef"})
    config = dataclasses.replace(config, database=dataclasses.replace(config.database, url=url))
    hub = Hub.open(config, upgrade=True)
    if hub.engine.dialect.name == "postgresql":
        with hub.engine.begin() as conn:
            tables = "events, suppressions, outbox, push_confirmations, evidence, recipients"
            conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    return hub


def bench_record(hub: Hub, n: int) -> tuple[float, float]:
    batches = [
        [
            OptOutEvent(
                email=keys.address(b * BATCH + i),
                kind=Kind.UNSUBSCRIBE,
                source=Source.SENDGRID,
                provider_event_id=keys.event_id(b * BATCH + i),
            )
            for i in range(BATCH)
        ]
        for b in range(n // BATCH)
    ]
    start = time.perf_counter()
    for batch in batches:
        with hub.sessions.begin() as session:
            record_events(session, batch, hub.policy, now=hub.clock())
    ours = n / (time.perf_counter() - start)

    with hub.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_bare"))
        conn.execute(text("CREATE TABLE bench_bare (email VARCHAR(254))"))
    rows = [[{"e": f"bare{b * BATCH + i}@example.com"} for i in range(BATCH)] for b in range(n // BATCH)]
    start = time.perf_counter()
    for batch in rows:
        with hub.engine.begin() as conn:
            conn.execute(text("INSERT INTO bench_bare (email) VALUES (:e)"), batch)
    bare = n / (time.perf_counter() - start)
    with hub.engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_bare"))
    return ours, bare


def bench_check(hub: Hub, n: int) -> tuple[float, float, int]:
    # the first ``events`` addresses are suppressed; ask about n addresses (in capitals: keys
    # ignore case), half of them known
    emails = [keys.address(i).upper() if i % 2 == 0 else keys.address(i, "example.org") for i in range(n)]
    start = time.perf_counter()
    with hub.sessions() as session:
        result = check_addresses(session, emails)
    ours = n / (time.perf_counter() - start)

    lowered = [e.lower() for e in emails]
    start = time.perf_counter()
    found = 0
    with hub.engine.connect() as conn:
        for i in range(0, n, BARE_IN_CHUNK):
            chunk = lowered[i : i + BARE_IN_CHUNK]
            params = {f"k{j}": k for j, k in enumerate(chunk)}
            placeholders = ", ".join(f":k{j}" for j in range(len(chunk)))
            found += len(
                conn.execute(
                    text(f"SELECT email_key FROM suppressions WHERE email_key IN ({placeholders})"), params
                ).all()
            )
    bare = n / (time.perf_counter() - start)
    assert found == len(result.suppressed), (found, len(result.suppressed))
    return ours, bare, len(result.suppressed)


def bench_import(hub: Hub, n: int) -> tuple[float, float, str]:
    csv_text = "email,list\n" + "".join(f"{keys.address(i, 'example.net')},legacy\n" for i in range(n))
    start = time.perf_counter()
    summary = import_csv(hub, io.StringIO(csv_text), origin="bench")
    seconds = time.perf_counter() - start
    return n / seconds, seconds, summary.line()


PROVIDERS = ("mailchimp", "sendgrid", "hubspot")


def table_bytes(hub: Hub, table: str) -> int:
    """A table's size with its indexes."""
    with hub.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if hub.engine.dialect.name == "postgresql":
            conn.execute(text(f"VACUUM {table}"))  # as autovacuum would: freed space is reused, not returned
            return int(conn.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one())
        pages = "SELECT sum(pgsize) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = :t)"
        return int(conn.execute(text(pages), {"t": table}).scalar_one() or 0)


def bench_outbox(hub: Hub, n: int) -> tuple[int, int, int, int]:
    """Outbox bytes for ``n`` opt-outs settled at three providers, then after compaction
    (outbox, push_confirmations), and the rows moved."""
    policy = dataclasses.replace(hub.policy, push_targets=lambda scope: PROVIDERS)
    now = hub.clock()
    for b in range(n // BATCH):
        events = [
            OptOutEvent(email=keys.address(b * BATCH + i, "example.org"), kind=Kind.UNSUBSCRIBE, source=Source.API)
            for i in range(BATCH)
        ]
        with hub.sessions.begin() as session:
            record_events(session, events, policy, now=now)
    with hub.engine.begin() as conn:  # settled as the worker leaves a 2xx entry
        conn.execute(
            text("UPDATE outbox SET state = 'done', done_at = due_at, last_status = 200, lease_owner = :owner"),
            {"owner": worker_id()},  # the worker that settled a row stays its lease owner
        )
    before = table_bytes(hub, "outbox")
    moved, step = 0, -1
    while step:
        with hub.sessions.begin() as session:
            step = compact_settled(session, before=hub.clock(), limit=hub.config.worker.compact_batch)
        moved += step
    return before, table_bytes(hub, "outbox"), table_bytes(hub, "push_confirmations"), moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--check", type=int, default=100_000)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--outbox", type=int, default=100_000, help="opt-outs settled before compaction (0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        hub = open_hub(url)
        tune_gc()  # as the serve and import commands do once started
        print(
            f"database: {hub.engine.dialect.name} ({hub.engine.url.render_as_string(hide_password=True)}); garbage "
            "collector tuned as in optout-hub serve/import"
        )
        ours, bare = bench_record(hub, args.events)
        print(
            f"record  {args.events:>9,} events in {BATCH}-event batches: {ours:>10,.0f} events/s   bare executemany: "
            f"{bare:>10,.0f} rows/s   ratio {ours / bare:.2f}   (target >= 30,000 events/s on SQLite)"
        )
        ours, bare, hits = bench_check(hub, args.check)
        print(
            f"check   {args.check:>9,} addresses in one call:     {ours:>10,.0f} addr/s     bare SELECT ... IN:  "
            f"{bare:>10,.0f} addr/s   ratio {ours / bare:.2f}   ({hits:,} suppressed; target >= 200,000 addr/s)"
        )
        if args.import_rows:
            rate, seconds, line = bench_import(hub, args.import_rows)
            print(
                f"import  {args.import_rows:>9,} CSV rows:                 {rate:>10,.0f} rows/s     {seconds:.1f} s  "
                f" ({line}; target < 60 s for 1,000,000)"
            )
        if args.outbox:
            before, after, kept, moved = bench_outbox(hub, args.outbox)
            per = 100_000 / args.outbox / 1e6
            print(
                f"outbox  {args.outbox:>9,} opt-outs settled at 3 providers, per 100,000: outbox {before * per:.1f} MB "
                f"before compaction; after: outbox {after * per:.1f} MB + push_confirmations {kept * per:.1f} MB "
                f"({moved:,} rows moved)"
            )
        hub.close()


if __name__ == "__main__":
    main()
