"""Schema migrations: they build exactly the models, and carry the rows stored before them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import DateTime, Engine, column, delete, insert, inspect, select, table, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from adapters.config import Config
from adapters.consent import MAX_CLOCK_SKEW
from adapters.events import Kind, OptOutEvent, Source, Verification
from adapters.hub import Hub
from adapters.store import database
from adapters.store.changes import read_changes
from adapters.store.compaction import KEPT
from adapters.store.models import (
    Base,
    ConfirmationSend,
    ConsentConflict,
    Event,
    EventCount,
    OutboxRow,
    PushConfirmation,
    Recipient,
    RecipientCount,
    Suppression,
    WebhookDelivery,
)
from adapters.store.queries import address_state
from tests.support.clock import Clock


@contextlib.contextmanager
def engine_at(database_url: str, revision: str) -> Iterator[Engine]:
    """An engine on a database migrated up to ``revision`` (the test adds rows, then upgrades)."""
    engine = database.make_engine(database_url)
    try:
        command.upgrade(database.alembic_config(engine), revision)
        yield engine
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    with engine_at(database_url, "head") as engine, engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_event_counts_migration_counts_the_events_already_stored(database_url: str) -> None:
    with engine_at(database_url, "0002_confirmation_sends") as engine:
        late = datetime(2026, 11, 23, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC on the 24th
        rows = [
            {
                "email": "a@example.com",
                "email_key": "a@example.com",
                "kind": "unsubscribe",
                "scope": "global",
                "source": "smtp",
                "verification": "none",
                "occurred_at": late,
                "received_at": late,
                "reason": "r" * 300,
            },
            {
                "email": "b@example.com",
                "email_key": "b@example.com",
                "kind": "unsubscribe",
                "scope": "global",
                "source": "smtp",
                "verification": "none",
                "occurred_at": late,
                "received_at": late,
                "reason": "r" * 250,
            },
            {
                "email": "c@example.com",
                "email_key": "c@example.com",
                "kind": "complaint",
                "scope": "global",
                "source": "api",
                "verification": "none",
                "occurred_at": late,
                "received_at": late - timedelta(days=1),
                "reason": None,
            },
        ]
        with engine.begin() as conn:
            conn.execute(insert(Event), rows)
        database.upgrade(engine)
        with engine.connect() as conn:
            counts = {(c.day, c.source, c.kind, c.reason): c.n for c in conn.execute(select(EventCount))}
        assert counts == {
            ("2026-11-24", "smtp", "unsubscribe", "r" * 200): 2,
            ("2026-11-23", "api", "complaint", ""): 1,
        }


def test_confirmation_queue_migration_keeps_sent_mail_as_sent(database_url: str) -> None:
    with engine_at(database_url, "0003_event_counts") as engine:
        sent_at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO confirmation_sends (email_key, day, sent_at) VALUES ('max@example.com', "
                    "'2026-11-23', :at)"
                ),
                {"at": sent_at if engine.dialect.name == "postgresql" else "2026-11-23 09:00:00.000000"},
            )
        database.upgrade(engine)
        with Session(engine) as session:
            [row] = session.scalars(select(ConfirmationSend)).all()
        assert (row.state, row.email, row.scope, row.lang, row.attempts) == (
            "sent",
            "max@example.com",
            "global",
            "en",
            1,
        )
        assert row.queued_at == row.next_attempt_at == row.sent_at == sent_at


def test_recipient_counts_migration_counts_the_addresses_already_issued(database_url: str) -> None:
    with engine_at(database_url, "0004_confirmation_queue") as engine:
        now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        issued = [
            ("a@example.com", "news", "c1"),
            ("a@example.com", "deals", "c1"),
            ("b@example.com", "news", "c1"),
            ("b@example.com", "", "c2"),
            ("c@example.com", "", ""),
        ]
        with engine.begin() as conn:
            conn.execute(
                insert(Recipient),
                [{"email": e, "email_key": e, "topic": t, "campaign": c, "created_at": now} for e, t, c in issued],
            )
        database.upgrade(engine)
        with engine.connect() as conn:
            counts = {(c.kind, c.name): c.addresses for c in conn.execute(select(RecipientCount))}
        assert counts == {("campaign", "c1"): 2, ("campaign", "c2"): 1, ("topic", "news"): 2, ("topic", "deals"): 1}


def test_suppressions_migration_keeps_the_opt_outs_in_a_rowid_table(database_url: str) -> None:
    with engine_at(database_url, "0005_recipient_counts") as engine:
        at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        row = {
            "email_key": "max@example.com",
            "scope": "global",
            "email": "Max@Example.com",
            "suppressed": True,
            "kind": "complaint",
            "source": "sendgrid",
            "reason": "spam",
            "first_at": at,
            "last_at": at,
            "event_id": 7,
        }
        with engine.begin() as conn:
            conn.execute(insert(Suppression), [row])
        database.upgrade(engine)
        with engine.connect() as conn:
            assert [dict(r._mapping) for r in conn.execute(select(Suppression.__table__))] == [row]
            if engine.dialect.name == "sqlite":  # new rows append to the table; only the key index takes random inserts
                schema = conn.exec_driver_sql("SELECT sql FROM sqlite_schema WHERE name = 'suppressions'").scalar_one()
                assert "WITHOUT ROWID" not in schema.upper()
                assert (
                    conn.exec_driver_sql(
                        "SELECT count(*) FROM sqlite_schema WHERE name = 'ix_suppressions_last_at'"
                    ).scalar_one()
                    == 1
                )


def test_events_migration_keeps_deduplicating_on_one_address_index(database_url: str) -> None:
    with engine_at(database_url, "0006_suppressions_rowid") as engine:
        at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        row = {
            "email": "Max@Example.com",
            "email_key": "max@example.com",
            "kind": "unsubscribe",
            "scope": "global",
            "source": "sendgrid",
            "verification": "signature",
            "provider_event_id": "ahSCB7xYcXFb-hEaawsPRw==",
            "occurred_at": at,
            "received_at": at,
        }
        with (
            engine.begin() as conn
        ):  # a push queued for the event: SQLite's rebuild of events must keep it pointing there
            event_id = conn.execute(insert(Event).values(row).returning(Event.id)).scalar_one()
            conn.execute(
                insert(OutboxRow).values(
                    event_id=event_id,
                    provider="mailchimp",
                    action="unsubscribe",
                    email=row["email"],
                    scope="global",
                    state="pending",
                    attempts=0,
                    due_at=at,
                    received_at=at,
                    created_at=at,
                )
            )
        database.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(select(OutboxRow.event_id)).scalars().all() == [event_id]
            if engine.dialect.name == "sqlite":
                assert (
                    conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
                )  # enforced again after the migration
        replay = pg_insert(Event) if engine.dialect.name == "postgresql" else sqlite_insert(Event)
        with engine.begin() as conn:
            assert (
                conn.execute(
                    replay.values(row)
                    .on_conflict_do_nothing(index_elements=["email_key", "source", "provider_event_id"])
                    .returning(Event.id)
                ).all()
                == []
            )
            conn.execute(insert(Event), [{**row, "provider_event_id": "another-event"}])
        with Session(engine) as session:
            assert [e["provider_event_id"] for e in address_state(session, "MAX@example.com")["events"]] == [
                "ahSCB7xYcXFb-hEaawsPRw==",
                "another-event",
            ]


def test_provenance_migration_keeps_the_events_with_no_actor_and_goes_back(database_url: str) -> None:
    with engine_at(database_url, "0007_events_address_key") as engine:
        at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        row = {
            "email": "Ivy@Example.com",
            "email_key": "ivy@example.com",
            "kind": "unsubscribe",
            "scope": "global",
            "source": "smtp",
            "verification": "dkim",
            "occurred_at": at,
            "received_at": at,
        }
        with engine.begin() as conn:
            event_id = conn.execute(insert(Event).values(row).returning(Event.id)).scalar_one()
        database.upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(select(Event.id, Event.email, Event.actor)).all() == [
                (event_id, "Ivy@Example.com", None)
            ]
            conn.execute(insert(ConsentConflict).values(event_id=event_id, opt_out_source="smtp", created_at=at))
        command.downgrade(database.alembic_config(engine), "0007_events_address_key")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, email FROM events")).all() == [(event_id, "Ivy@Example.com")]
        database.upgrade(engine)


def test_admin_names_migration_leaves_earlier_decisions_unnamed_and_goes_back(database_url: str) -> None:
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    with engine_at(database_url, "0008_consent_provenance") as engine:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO evidence (channel, source, received_at, content, content_type, state) "
                    "VALUES ('smtp', 'smtp', :at, :raw, 'message/rfc822', 'approved')"
                ),
                {"at": at, "raw": b"Subject: stop"},
            )
        database.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT state, decided_by FROM evidence")).all() == [("approved", None)]
            assert conn.execute(text("SELECT retried_by, retried_at FROM outbox")).all() == []
        command.downgrade(database.alembic_config(engine), "0008_consent_provenance")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT state FROM evidence")).all() == [("approved",)]
        database.upgrade(engine)


def test_clamp_migration_unfreezes_a_state_dated_in_the_future(
    database_url: str, make_config: Callable[..., Config]
) -> None:
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    ahead = received + timedelta(days=365)  # a signed provider event dated a year ahead
    with engine_at(database_url, "0008_consent_provenance") as engine:
        row = {
            "email": "fay@example.com",
            "email_key": "fay@example.com",
            "kind": "unsubscribe",
            "scope": "global",
            "source": "sendgrid",
            "verification": "signature",
            "actor": "person",
            "provider_event_id": "future-1",
            "occurred_at": ahead,
            "received_at": received,
        }
        with engine.begin() as conn:  # the state as the fold stored it before the clamp
            event_id = conn.execute(insert(Event).values(row).returning(Event.id)).scalar_one()
            conn.execute(
                insert(Suppression).values(
                    email_key="fay@example.com",
                    scope="global",
                    email="fay@example.com",
                    suppressed=True,
                    kind="unsubscribe",
                    source="sendgrid",
                    first_at=ahead,
                    last_at=ahead,
                    event_id=event_id,
                )
            )
        database.upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(select(Suppression.first_at, Suppression.last_at)).one() == (
                received + MAX_CLOCK_SKEW,
                received + MAX_CLOCK_SKEW,
            )
    hub = Hub.open(make_config(), clock=Clock(datetime.now(UTC)), upgrade=True)
    try:
        hub.record([OptOutEvent("fay@example.com", Kind.RESUBSCRIBE, Source.PREFERENCES, "global", Verification.TOKEN)])
        with hub.sessions() as session:
            assert address_state(session, "fay@example.com")["suppressed"] is False  # today's request counts
    finally:
        hub.close()


def test_compaction_migration_puts_the_moved_pushes_back_when_it_goes_back(database_url: str) -> None:
    with engine_at(database_url, "head") as engine:
        at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        event = {
            "email": "Ivy@Example.com",
            "email_key": "ivy@example.com",
            "kind": "unsubscribe",
            "scope": "global",
            "source": "smtp",
            "verification": "dkim",
            "occurred_at": at,
            "received_at": at,
        }
        with engine.begin() as conn:
            event_id = conn.execute(insert(Event).values(event).returning(Event.id)).scalar_one()
            push = {"event_id": event_id, "provider": "sendgrid", "action": "unsubscribe", "scope": "global"}
            push |= {"attempts": 2, "received_at": at, "created_at": at, "done_at": at, "last_status": 202}
            conn.execute(insert(PushConfirmation).values(id=41, **push))
        command.downgrade(database.alembic_config(engine), "0008_consent_provenance")
        with engine.connect() as conn:
            back = conn.execute(
                text("SELECT id, provider, action, email, scope, state, attempts, last_status FROM outbox")
            ).all()
        assert back == [(41, "sendgrid", "unsubscribe", "Ivy@Example.com", "global", "done", 2, 202)]
        database.upgrade(engine)


def test_push_action_and_scope_migration_fills_the_compacted_pushes_and_goes_back(database_url: str) -> None:
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    news = "topic:newsletter"
    with engine_at(database_url, "0015_outbox_compaction") as engine:
        with engine.begin() as conn:

            def event(kind: str, scope: str, source: str) -> int:
                row = {"email": "Ivy@Example.com", "email_key": "ivy@example.com", "kind": kind, "scope": scope}
                row |= {"source": source, "verification": "none", "occurred_at": at, "received_at": at}
                return conn.execute(insert(Event).values(row).returning(Event.id)).scalar_one()

            optout, lifted = event("unsubscribe", "global", "smtp"), event("resubscribe", news, "mailchimp")
            settled = {"attempts": 1, "received_at": at, "created_at": at, "done_at": at, "last_status": 200}
            moved = [(1, optout, "sendgrid"), (2, optout, "mailchimp")]
            moved += [(3, lifted, "sendgrid"), (4, lifted, "mailchimp")]
            conn.execute(
                insert(PushConfirmation.__table__),  # the columns of 0015 only
                [{"id": i, "event_id": e, "provider": p, **settled} for i, e, p in moved],
            )
        database.upgrade(engine)
        with engine.connect() as conn:
            filled = conn.execute(
                select(PushConfirmation.id, PushConfirmation.action, PushConfirmation.scope).order_by(
                    PushConfirmation.id
                )
            ).all()
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert filled == [
            (1, "unsubscribe", "global"),
            (2, "unsubscribe", "global"),
            (3, "resubscribe", news),  # the lifted opt-out, pushed to the other provider
            (4, "unsubscribe", news),  # a resubscribe pushed to its own provider: the opt-out pushed back
        ]
        command.downgrade(database.alembic_config(engine), "0015_outbox_compaction")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, event_id, provider, attempts FROM push_confirmations")).all() == [
                (i, e, p, 1) for i, e, p in moved
            ]
            assert "action" not in {c["name"] for c in inspect(conn).get_columns("push_confirmations")}
        database.upgrade(engine)


def test_outbox_ids_migration_never_hands_out_a_compacted_pushs_id_again(database_url: str) -> None:
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    outbox = OutboxRow.__table__
    with engine_at(database_url, "0017_push_action_scope") as engine:
        with engine.begin() as conn:
            row = {"email": "ivy@example.com", "email_key": "ivy@example.com", "kind": "unsubscribe"}
            row |= {"scope": "global", "source": "smtp", "verification": "none", "occurred_at": at, "received_at": at}
            event_id = conn.execute(insert(Event).values(row).returning(Event.id)).scalar_one()
            push = {"event_id": event_id, "provider": "sendgrid", "action": "unsubscribe", "scope": "global"}
            push |= {"email": "ivy@example.com", "attempts": 1, "received_at": at, "created_at": at, "due_at": at}
            conn.execute(insert(outbox), [{**push, "state": "done", "done_at": at}] * 5)
            newest = outbox.c.id > 1  # compacted: 2 to 5 leave the outbox
            conn.execute(
                insert(PushConfirmation.__table__).from_select(KEPT, select(*(outbox.c[c] for c in KEPT)).where(newest))
            )
            conn.execute(delete(outbox).where(newest))
        database.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(delete(outbox))  # an empty outbox still remembers
            assert conn.execute(insert(outbox).values(**push, state="pending").returning(outbox.c.id)).scalar_one() == 6
        command.downgrade(database.alembic_config(engine), "0017_push_action_scope")
        with engine.connect() as conn:
            assert conn.execute(select(outbox.c.id)).scalars().all() == [6]
        database.upgrade(engine)


def test_slim_changes_migration_keeps_the_feed_and_its_deliveries_and_goes_back(database_url: str) -> None:
    at = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    wide = table(  # changes as 0016 made them
        "changes",
        *(column(n) for n in ("id", "seq", "event_id", "email", "scope", "suppressed", "kind", "source", "actor")),
        column("occurred_at", DateTime(timezone=True)),
        column("recorded_at", DateTime(timezone=True)),
    )
    with engine_at(database_url, "0018_outbox_ids_not_reused") as engine:
        with engine.begin() as conn:
            ids = []
            for email, kind, occurred_at in (
                ("Ann@example.com", "unsubscribe", at),
                ("bob@example.com", "complaint", at + timedelta(hours=2)),
            ):  # dated ahead: the feed shows it clamped
                row = {
                    "email": email,
                    "email_key": email.lower(),
                    "kind": kind,
                    "scope": "global",
                    "source": "sendgrid",
                }
                row |= {"verification": "signature", "actor": "person", "occurred_at": occurred_at, "received_at": at}
                ids.append(conn.execute(insert(Event).values(row).returning(Event.id)).scalar_one())
            conn.execute(text("UPDATE change_sequence SET last = 12"))
            change = {"scope": "global", "suppressed": True, "source": "sendgrid", "actor": "person", "recorded_at": at}
            conn.execute(
                insert(wide),
                [
                    {
                        **change,
                        "id": 1,
                        "seq": 11,
                        "event_id": ids[0],
                        "email": "x",
                        "kind": "unsubscribe",
                        "occurred_at": at,
                    },
                    {
                        **change,
                        "id": 2,
                        "seq": 12,
                        "event_id": ids[1],
                        "email": "x",
                        "kind": "complaint",
                        "occurred_at": at,
                    },
                ],
            )
            delivery = {"subscriber": "https://hooks.example/h", "state": "pending", "attempts": 0}
            delivery |= {"next_attempt_at": at, "created_at": at}
            conn.execute(
                insert(WebhookDelivery.__table__), [{**delivery, "change_id": 2}, {**delivery, "change_id": 1}]
            )
        database.upgrade(engine)
        with Session(engine) as session:
            assert compare_metadata(MigrationContext.configure(session.connection()), Base.metadata) == []
            feed = [(c.seq, c.email, c.kind, c.occurred_at) for c in read_changes(session, 0, 10).changes]
            assert feed == [
                (11, "Ann@example.com", "unsubscribe", at),
                (12, "bob@example.com", "complaint", at + MAX_CLOCK_SKEW),  # read through the event
            ]
            pointed = session.execute(select(WebhookDelivery.change_id).order_by(WebhookDelivery.id)).scalars().all()
            assert pointed == [12, 11]  # each delivery now holds its change's seq
        command.downgrade(database.alembic_config(engine), "0018_outbox_ids_not_reused")
        with engine.connect() as conn:
            back = conn.execute(
                select(wide.c.seq, wide.c.email, wide.c.kind, wide.c.actor, wide.c.occurred_at)
                .join_from(WebhookDelivery.__table__, wide, wide.c.id == WebhookDelivery.__table__.c.change_id)
                .order_by(WebhookDelivery.__table__.c.id)
            ).all()
            assert [tuple(r[:4]) for r in back] == [
                (12, "bob@example.com", "complaint", "person"),
                (11, "Ann@example.com", "unsubscribe", "person"),
            ]
            assert [r[4].replace(tzinfo=UTC) for r in back] == [at + MAX_CLOCK_SKEW, at]
        database.upgrade(engine)
