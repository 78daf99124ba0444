"""Reading the store: bulk checks (marketing and transactional) and export."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import text

from adapters.config import Config
from adapters.events import Kind, MailCategory, Source, Verification
from adapters.hub import Hub
from adapters.store import queries
from adapters.store.database import make_engine, upgrade
from adapters.store.queries import address_state, check_addresses, export_suppressions
from tests.support.store import ev


def test_check_many_addresses_in_chunks(hub: Hub, monkeypatch) -> None:
    monkeypatch.setattr(queries, "CHECK_CHUNK", 7)
    hub.record([ev(f"s{i}@example.com") for i in range(0, 60, 3)])
    emails = [f"S{i}@Example.com" for i in range(60)] + ["bad", "s0@example.com"]
    with hub.sessions() as session:
        result = check_addresses(session, emails)
    assert result.suppressed == [f"S{i}@Example.com" for i in range(0, 60, 3)] + [
        "s0@example.com"
    ]  # as given, in order
    assert result.invalid == ["bad"]


def test_export_since(hub: Hub, clock) -> None:
    t0 = clock()
    hub.record([ev("old@example.com", occurred_at=t0 - timedelta(days=3))])
    hub.record([ev("new@example.com", occurred_at=t0)])
    with hub.sessions() as session:
        assert [r["email"] for r in export_suppressions(session)] == ["old@example.com", "new@example.com"]
        assert [r["email"] for r in export_suppressions(session, since=t0 - timedelta(days=1))] == ["new@example.com"]


def _transactional(hub: Hub, emails: list[str]) -> list[str]:
    with hub.sessions() as session:
        return check_addresses(session, emails, category=MailCategory.TRANSACTIONAL, policy=hub.policy).suppressed


@pytest.mark.parametrize("bounces", [False, True])
def test_transactional_mail_is_stopped_by_complaints_and_configured_bounces_only(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], bounces: bool
) -> None:
    hub = make_hub(make_config({"compliance": {"transactional_suppress_hard_bounces": bounces}}))
    hub.record(
        [
            ev("unsub@example.com"),
            ev("topic@example.com", scope="topic:news"),
            ev("complained@example.com", Kind.COMPLAINT, Source.SENDGRID, provider_event_id="c1"),
            ev("bounced@example.com", Kind.BOUNCE, Source.SENDGRID, provider_event_id="b1"),
            ev("both@example.com"),  # an unsubscribe first: the state row keeps its kind ...
            ev(
                "both@example.com", Kind.COMPLAINT, Source.MAILCHIMP, provider_event_id="c2"
            ),  # ... the complaint counts
        ]
    )
    emails = ["unsub@example.com", "topic@example.com", "complained@example.com", "bounced@example.com"]
    emails += ["both@example.com", "fresh@example.com"]
    expected = ["complained@example.com", *(["bounced@example.com"] if bounces else []), "both@example.com"]
    assert _transactional(hub, emails) == expected
    with hub.sessions() as session:
        marketing = check_addresses(session, emails, policy=hub.policy).suppressed
        unsub = address_state(session, "unsub@example.com", category=MailCategory.TRANSACTIONAL, policy=hub.policy)
        complained = address_state(session, "complained@example.com", category=MailCategory.TRANSACTIONAL)
    assert marketing == ["unsub@example.com", "complained@example.com", "both@example.com"]  # bounces: not by default
    assert (unsub["suppressed"], unsub["category"]) == (False, "transactional")
    assert (complained["suppressed"], complained["scopes"]) == (True, ["global"])


def test_a_lifted_opt_out_clears_the_complaint_for_transactional_mail(hub: Hub, clock) -> None:
    hub.record([ev("ann@example.com", Kind.COMPLAINT, Source.SMTP)])
    assert _transactional(hub, ["ann@example.com"]) == ["ann@example.com"]
    clock.advance(60)
    stranger = ev("ann@example.com", Kind.RESUBSCRIBE, Source.API, reason="no admin named")  # proves nothing
    hub.record([stranger])
    assert _transactional(hub, ["ann@example.com"]) == ["ann@example.com"]
    clock.advance(60)
    person = ev("ann@example.com", Kind.RESUBSCRIBE, Source.PREFERENCES, verification=Verification.TOKEN)
    hub.record([person])
    assert _transactional(hub, ["ann@example.com"]) == []
    clock.advance(60)
    hub.record([ev("ann@example.com", Kind.COMPLAINT, Source.SMTP, provider_event_id="again")])
    assert _transactional(hub, ["ann@example.com"]) == ["ann@example.com"]


def test_migration_fills_delivery_blocks_from_stored_events(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0008_consent_provenance")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO events (email, email_key, kind, scope, source, verification, occurred_at, "
                    "received_at) VALUES (:e, :k, :kind, 'global', 'smtp', 'none', :t, :t)"
                ),
                [
                    {"e": "Ann@example.com", "k": "ann@example.com", "kind": "complaint", "t": "2026-01-01 10:00:00"},
                    {"e": "Ann@example.com", "k": "ann@example.com", "kind": "complaint", "t": "2026-01-03 10:00:00"},
                    {"e": "bo@example.com", "k": "bo@example.com", "kind": "unsubscribe", "t": "2026-01-02 10:00:00"},
                ],
            )
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT email_key, kind FROM delivery_blocks")).all()
        assert [tuple(r) for r in rows] == [("ann@example.com", "complaint")]
    finally:
        engine.dispose()
