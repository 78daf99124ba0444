"""Constant Contact on /admin over real HTTP: the dead grant, the budget and the queue shown;
re-authorization through the fake's consent page and back to the callback; no webhook route;
the budget on /metrics."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from adapters.config import Config
from adapters.errors import ProviderAPIError
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.providers import constant_contact
from adapters.worker.constant_contact import clients_for
from adapters.worker.outbox import Worker
from tests.support import constant_contact as cc
from tests.support.clock import Clock
from tests.support.fake_providers import CC_AUTHORIZE_PATH, FakeConstantContact
from tests.support.servers import free_port
from webhooks import create_app
from webhooks.admin.constant_contact import CALLBACK_PATH
from webhooks.serving import BackgroundServer


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeConstantContact]:
    with cc.started(clock, per_second=None) as fake:
        yield fake


@pytest.fixture
def site(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], fake: FakeConstantContact
) -> Iterator[tuple[Hub, str]]:
    """The app on a port known in advance, so ``[http].public_url`` is where it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = make_config(
        {"http": {"public_url": url}, "providers": {"constant_contact": cc.cc_table(fake, daily_requests=500)}},
        env=cc.cc_env(fake),
    )
    hub = make_hub(config)
    server = BackgroundServer(create_app(hub=hub), host="127.0.0.1", port=port, threads=4, ident="test", name="cc")
    server.start()
    yield hub, url
    server.stop()


def card(html: str, element: str) -> str:
    match = re.search(rf'id="{element}"[^>]*>(.*?)</p>', html, re.S)
    assert match, element
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def kill_grant(hub: Hub, fake: FakeConstantContact, clock: Clock) -> None:
    with requests.Session() as http:
        client = constant_contact.make_client(hub.config, http, now=clock, state=cc.state(hub))
        client.check()
        fake.refresh_tokens.clear()
        clock.advance(86_400)
        with pytest.raises(ProviderAPIError, match="invalid_grant"):
            client.check()


def test_the_dead_grant_budget_and_queue_are_shown_and_re_authorization_revives_it(
    site: tuple[Hub, str], fake: FakeConstantContact, clock: Clock, admin_headers: dict[str, str]
) -> None:
    hub, url = site
    kill_grant(hub, fake, clock)
    hub.record([OptOutEvent("a@example.com", Kind.UNSUBSCRIBE, Source.SMTP, occurred_at=clock())])
    page = requests.get(f"{url}/admin", headers=admin_headers, timeout=10)
    assert page.status_code == 200
    assert card(page.text, "cc-connection") == (
        "Disconnected: the refresh token was refused (invalid_grant). "
        "Re-authorize Constant Contact: opt-outs wait until then."
    )
    assert card(page.text, "cc-budget") == "Calls left today: 500 of 500."  # a new UTC day
    assert card(page.text, "cc-queue").startswith("1 opt-outs still to push")

    # the admin's button: a POST (session and CSRF, or the bearer token) off to Constant Contact
    start = requests.post(
        f"{url}/admin/constant_contact/authorize", headers=admin_headers, allow_redirects=False, timeout=10
    )
    assert start.status_code == 303
    target = urlsplit(start.headers["Location"])
    query = parse_qs(target.query)
    assert f"{target.scheme}://{target.netloc}{target.path}" == fake.url + CC_AUTHORIZE_PATH
    assert query["redirect_uri"] == [url + CALLBACK_PATH] and query["response_type"] == ["code"]
    assert "scope=contact_data+offline_access" in target.query and query["state"][0]
    consent = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)  # the admin consents
    assert consent.status_code == 302 and consent.headers["Location"].startswith(url + CALLBACK_PATH)
    back = requests.get(consent.headers["Location"], allow_redirects=False, timeout=10)
    assert (back.status_code, back.headers["Location"]) == (303, "/admin#constant-contact")
    assert fake.token_grants[-1] == "authorization_code"
    grant = cc.state(hub).load()
    assert grant.dead is None and grant.tokens is not None
    page = requests.get(f"{url}/admin", headers=admin_headers, timeout=10)
    assert card(page.text, "cc-connection") == "Connected."
    # the state was good once: the same redirect again is refused, and exchanges nothing
    again = requests.get(consent.headers["Location"], allow_redirects=False, timeout=10)
    assert again.status_code == 400 and "start again from /admin" in again.json()["error"]
    assert fake.token_grants.count("authorization_code") == 1


def test_a_forged_callback_is_refused(site: tuple[Hub, str], fake: FakeConstantContact) -> None:
    _, url = site
    code = fake.issue_code(url + CALLBACK_PATH)
    forged = requests.get(f"{url}{CALLBACK_PATH}", params={"code": code, "state": "guess"}, timeout=10)
    assert forged.status_code == 400 and fake.token_grants == []
    assert requests.get(f"{url}{CALLBACK_PATH}", timeout=10).status_code == 400


def test_starting_an_authorization_needs_the_admin(site: tuple[Hub, str]) -> None:
    _, url = site
    anonymous = requests.post(f"{url}/admin/constant_contact/authorize", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303 and "/admin/login" in anonymous.headers["Location"]


def test_no_webhook_route_and_the_budget_on_metrics(
    site: tuple[Hub, str], fake: FakeConstantContact, clock: Clock
) -> None:
    hub, url = site
    assert requests.post(f"{url}/webhooks/constant_contact", json=[], timeout=10).status_code == 404
    with requests.Session() as http:
        constant_contact.make_client(hub.config, http, now=clock, state=cc.state(hub)).check()
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert 'optout_provider_budget_remaining{provider="constant_contact"} 499.0' in metrics


def test_a_spent_quota_and_the_rows_waiting_for_midnight_are_shown(
    site: tuple[Hub, str], fake: FakeConstantContact, clock: Clock, admin_headers: dict[str, str]
) -> None:
    hub, url = site
    hub.record([OptOutEvent(f"m{i}@example.com", Kind.UNSUBSCRIBE, Source.SMTP, occurred_at=clock()) for i in range(3)])
    fake.daily_quota = 0  # Constant Contact answers quota_exceeded from the first call
    with requests.Session() as http:
        tallies = Worker(hub, clients_for(hub, http), http=http, rng=lambda: 1.0).drain()
    assert tallies["constant_contact"].retried == 3
    page = requests.get(f"{url}/admin", headers=admin_headers, timeout=10).text
    assert card(page, "cc-budget") == "Daily quota spent: no call before 2026-11-25 00:00 UTC."
    assert card(page, "cc-queue") == "3 opt-outs still to push; next attempt 2026-11-25 00:00 UTC."
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert 'optout_provider_budget_remaining{provider="constant_contact"} 0.0' in metrics
