"""The outbox: admin helpers, claiming under a lease, batching, settling, the worker."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import update

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source, topic_scope
from adapters.hub import Hub
from adapters.models import OutboxRow
from adapters.outbox import dead_rows, outbox_summary, retry_row

SENDGRID_ONLY = {"providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": ""}}}


def optout(email: str, source: Source = Source.API, scope: str = "global", kind: Kind = Kind.UNSUBSCRIBE) -> OptOutEvent:
    return OptOutEvent(email=email, kind=kind, source=source, scope=scope)


def test_summary_dead_rows_and_retry(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock) -> None:
    hub = make_hub(make_config(SENDGRID_ONLY, env={"SENDGRID_API_KEY": "SG.test"}))
    hub.record([optout(f"p{i}@example.com") for i in range(3)])
    with hub.sessions.begin() as session:
        assert outbox_summary(session) == {"sendgrid": {"pending": 3, "done": 0, "dead": 0}}
        ids = sorted(session.scalars(OutboxRow.__table__.select().with_only_columns(OutboxRow.id)))
        session.execute(update(OutboxRow).where(OutboxRow.id == ids[0]).values(state="dead", attempts=4, last_status=400, last_error="bad"))
        session.execute(update(OutboxRow).where(OutboxRow.id == ids[1]).values(state="done"))
    with hub.sessions.begin() as session:
        assert outbox_summary(session) == {"sendgrid": {"pending": 1, "done": 1, "dead": 1}}
        (dead,) = dead_rows(session)
        assert (dead.id, dead.last_status, dead.last_error) == (ids[0], 400, "bad")
        assert dead_rows(session, provider="mailchimp") == []
        later = clock.advance(60)
        assert retry_row(session, ids[0], now=later)
        assert not retry_row(session, ids[1], now=later)  # done: nothing to retry
        assert not retry_row(session, 999_999, now=later)
    with hub.sessions.begin() as session:
        row = session.get(OutboxRow, ids[0])
        assert (row.state, row.attempts, row.due_at, row.lease_owner) == ("pending", 0, later, None)
        assert outbox_summary(session)["sendgrid"] == {"pending": 2, "done": 1, "dead": 0}


def test_topic_rows_only_for_mapped_providers(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]) -> None:
    config = make_config({**SENDGRID_ONLY, "topics": [{"name": "news", "sendgrid_group": 7}, {"name": "other"}]}, env={"SENDGRID_API_KEY": "SG.test"})
    hub = make_hub(config)
    hub.record([optout("a@example.com", scope=topic_scope("news")), optout("b@example.com", scope=topic_scope("other")), optout("c@example.com", source=Source.SENDGRID)])
    with hub.sessions.begin() as session:
        assert outbox_summary(session) == {"sendgrid": {"pending": 1, "done": 0, "dead": 0}}
