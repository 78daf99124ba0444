"""``report honour`` reads pushes wherever they are: every request's figures, and the report
made of them, are the same before and after the settled pushes are compacted (both
databases, pushed by the real worker to the fake providers)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from adapters.compliance.deadlines import Limits
from adapters.compliance.honour import opt_out_kinds, write_report
from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.honour import Request, requests_since
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders
from tests.support.store import compact_everything

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KINDS = opt_out_kinds(False)


def read(hub: Hub, now: datetime) -> tuple[list[Request], dict[str, Any]]:
    out = io.StringIO()
    with hub.sessions() as session:
        found = list(requests_since(session, T0 - timedelta(days=1), KINDS))
        write_report(session, out, since=T0 - timedelta(days=1), now=now, limits=Limits(), kinds=KINDS, fmt="json")
    return found, json.loads(out.getvalue())


def test_every_requests_figures_read_the_same_after_compaction(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    hub = make_hub(make_push_config(fake_providers, providers=("mailchimp", "sendgrid")))
    clock.now = T0
    with requests.Session() as http:
        worker = Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http, rng=lambda: 1.0)
        hub.record([OptOutEvent("a@example.com", Kind.UNSUBSCRIBE, Source.API)])
        clock.advance(60)
        worker.drain()  # a: confirmed at both at 60
        hub.record([OptOutEvent("b@example.com", Kind.UNSUBSCRIBE, Source.ONECLICK)])
        clock.advance(240)
        fake_providers.sendgrid.fail_next(500)
        worker.drain()  # b: Mailchimp at 300, SendGrid to retry
        clock.now = T0 + timedelta(hours=1)
        worker.drain()  # b: SendGrid at 3600
        hub.record([OptOutEvent("c@example.com", Kind.COMPLAINT, Source.SENDGRID)])  # Mailchimp only
        fake_providers.mailchimp.fail_next(400, times=2)
        worker.drain()  # c: refused for good
    hub.record([OptOutEvent("d@example.com", Kind.UNSUBSCRIBE, Source.API)])  # not pushed yet
    now = T0 + timedelta(days=3)
    before = read(hub, now)

    assert compact_everything(hub) == 4  # a's and b's
    assert read(hub, now) == before

    found, report = before
    assert [(r.email, r.settled) for r in found] == [
        ("a@example.com", {"mailchimp": T0 + timedelta(seconds=60), "sendgrid": T0 + timedelta(seconds=60)}),
        ("b@example.com", {"mailchimp": T0 + timedelta(seconds=300), "sendgrid": T0 + timedelta(hours=1)}),
        ("c@example.com", {"mailchimp": None}),
        ("d@example.com", {"mailchimp": None, "sendgrid": None}),
    ]
    assert found[1].stored_at == T0 + timedelta(seconds=60)  # when its pushes were queued
    assert report["by_provider"]["sendgrid"]["to_settled_seconds"]["max"] == 3600 - 60
    assert [u["email"] for u in report["unsettled"]] == ["c@example.com", "d@example.com"]
