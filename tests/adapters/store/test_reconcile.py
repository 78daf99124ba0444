"""Reconciliation reads pushes wherever they are: which mailable addresses are removals at
the provider and which are drift, and which pulled opt-outs are the hub's own pushes read
back, come out the same before and after the settled pushes are compacted (both databases,
pushed by the real worker to the fake providers)."""

from __future__ import annotations

from collections.abc import Callable

import requests
from sqlalchemy import delete, select, update

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.providers.pull import PullPage
from adapters.store.models import Event, OutboxRow
from adapters.store.reconcile import store_page
from adapters.worker.outbox import Worker
from tests.support.fake_providers import FakeProviders
from tests.support.store import compact_everything

NEWS = topic_scope("newsletter")
# SendGrid's group for the newsletter lacks these four now; an opt-out pulled back from its
# global list is the hub's own push.
PAGE = PullPage(
    events=[OptOutEvent("echo@example.com", Kind.UNSUBSCRIBE, Source.SENDGRID, verification=Verification.PULL)],
    checkpoint=None,
    calls=1,
    mailable=["gone@example.com", "dead@example.com", "never@example.com", "queued@example.com"],
    scope=NEWS,
)


def decide(hub: Hub) -> tuple[int, int, list[str], list[str]]:
    """What one page changes (events stored, drift, the removals recorded, the addresses queued
    for SendGrid at the newsletter), in a transaction rolled back."""
    with hub.sessions() as session:
        result = store_page(session, "sendgrid", "changes", PAGE, hub.policy, now=hub.clock())
        removals = session.scalars(
            select(Event.email).where(Event.id.in_(result.recorded.event_ids), Event.kind == "resubscribe")
        ).all()
        queued = session.scalars(
            select(OutboxRow.email)
            .where(OutboxRow.provider == "sendgrid", OutboxRow.scope == NEWS, OutboxRow.state == "pending")
            .order_by(OutboxRow.email)
        ).all()
        session.rollback()
    return result.recorded.new, result.drift, sorted(removals), list(queued)


def test_removals_drift_and_echoes_read_the_same_after_compaction(
    make_push_config: Callable[..., Config], make_hub: Callable[[Config], Hub], fake_providers: FakeProviders
) -> None:
    hub = make_hub(make_push_config(fake_providers))
    hub.record([OptOutEvent(f"{name}@example.com", Kind.UNSUBSCRIBE, Source.API, NEWS) for name in ("gone", "dead")])
    hub.record([OptOutEvent("never@example.com", Kind.UNSUBSCRIBE, Source.MAILCHIMP, NEWS)])
    hub.record([OptOutEvent("echo@example.com", Kind.UNSUBSCRIBE, Source.API)])
    with requests.Session() as http:
        Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http).drain()
    # dead@'s push to SendGrid went dead; never@'s was never queued (SendGrid not enabled yet, say)
    with hub.sessions.begin() as session:
        at = (OutboxRow.provider == "sendgrid", OutboxRow.scope == NEWS)
        session.execute(update(OutboxRow).where(*at, OutboxRow.email == "dead@example.com").values(state="dead"))
        session.execute(delete(OutboxRow).where(*at, OutboxRow.email == "never@example.com"))
    hub.record([OptOutEvent("queued@example.com", Kind.UNSUBSCRIBE, Source.API, NEWS)])  # on its way
    before = decide(hub)

    assert compact_everything(hub) == 9  # gone@ 3, dead@ 2, never@ 1, echo@ 3
    assert decide(hub) == before
    # gone@: pushed there before, so removed there: an unproven resubscribe, its opt-out pushed
    # back; dead@: requeued (drift); never@: queued for the first time (drift); queued@: left
    # alone; echo@: not stored again (the one event stored is gone@'s resubscribe).
    queued = ["dead@example.com", "gone@example.com", "never@example.com", "queued@example.com"]
    assert before == (1, 2, ["gone@example.com"], queued)
