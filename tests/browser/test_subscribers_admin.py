"""A dead outbound webhook on /admin in a real browser: shown with the subscriber's answer,
retried with the button, then delivered by the worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import requests
from playwright.sync_api import Page
from sqlalchemy import select

from adapters.events import Kind, OptOutEvent, Source
from adapters.store.models import WebhookDelivery
from adapters.worker.outbox import Worker
from tests.support.environment import ADMIN_TOKEN
from tests.support.subscriber import Subscriber, new_secret
from webhooks import create_app


def test_admin_retries_a_dead_delivery(
    make_config, make_hub, serve_app, clock, new_page: Callable[..., Page], shot: Callable[[Page, str], Path]
) -> None:
    subscriber = Subscriber(new_secret(), clock)
    try:
        config = make_config(
            {
                "http": {"public_url": "http://127.0.0.1"},
                "subscribers": [{"url": subscriber.url, "secret_env": "HOOK"}],
            },
            env={"HOOK": subscriber.secret},
        )
        hub = make_hub(config)
        url = serve_app(create_app(hub=hub)).url
        worker = Worker(hub, {}, http=requests.Session())
        hub.record([OptOutEvent("gus@example.com", Kind.COMPLAINT, Source.SMTP)])
        subscriber.answers = [410]
        worker.upkeep()
        with hub.sessions() as session:
            delivery = session.scalars(select(WebhookDelivery)).one()
        assert delivery.state == "dead"
        page = new_page()
        page.goto(f"{url}/admin")
        page.fill("#token", ADMIN_TOKEN)
        page.click("#sign-in")
        page.wait_for_selector("#subscribers")
        row = page.inner_text(f"#delivery-{delivery.id}")
        assert "complaint gus@example.com (global)" in row and "410" in row and subscriber.url in row
        shot(page, "subscriber-dead")
        page.click(f"#retry-delivery-{delivery.id}")
        page.wait_for_selector("#flash")
        assert page.locator(f"#delivery-{delivery.id}").count() == 0
        assert page.inner_text("#subscriber-summary").splitlines()[-1].split() == ["1", "0", "0"]
        worker.upkeep()
        assert [r.status for r in subscriber.received] == [410, 204]
        assert all(r.verified for r in subscriber.received)
    finally:
        subscriber.stop()
