"""The outbox in the store: dead rows put back in bulk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.models import OutboxRow
from adapters.store.outbox import retry_dead
from tests.support.clock import Clock


def record(hub: Hub, *emails: str) -> None:
    hub.record([OptOutEvent(email=e, kind=Kind.UNSUBSCRIBE, source=Source.API) for e in emails])


def kill(hub: Hub, provider: str, *, at: object) -> None:
    """The provider's pending rows go dead, as the worker leaves them (``due_at``: when)."""
    with hub.sessions.begin() as session:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.provider == provider, OutboxRow.state == "pending")
            .values(state="dead", attempts=3, due_at=at, last_status=401, last_error="bad key", lease_owner="w1")
        )


def test_retry_dead_puts_one_providers_dead_rows_back_since_a_time(
    make_push_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    hub = make_hub(make_push_config(None))
    record(hub, "a@example.com", "b@example.com")
    early = clock.now
    kill(hub, "sendgrid", at=early)
    kill(hub, "hubspot", at=early)
    clock.advance(3600)
    record(hub, "c@example.com")
    kill(hub, "sendgrid", at=clock.now)
    clock.advance(60)
    with hub.sessions.begin() as session:
        assert retry_dead(session, "sendgrid", now=clock.now, since=early + timedelta(minutes=30)) == 1
        assert retry_dead(session, "sendgrid", now=clock.now) == 2
        assert retry_dead(session, "sendgrid", now=clock.now) == 0
        assert retry_dead(session, "nosuch", now=clock.now) == 0
    with hub.sessions() as session:
        rows = session.scalars(select(OutboxRow).order_by(OutboxRow.id)).all()
    by_provider = {(r.provider, r.state) for r in rows}
    assert by_provider == {
        ("mailchimp", "pending"),
        ("sendgrid", "pending"),
        ("hubspot", "dead"),
        ("hubspot", "pending"),
    }
    back = [r for r in rows if r.provider == "sendgrid"]
    assert {(r.attempts, r.due_at, r.lease_owner) for r in back} == {(0, clock.now, None)}
