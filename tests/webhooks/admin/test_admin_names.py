"""Named admins over real HTTP (webhooks/admin/__init__.py, webhooks/api.py, actions.py): each
``[[admins]]`` token signs in as its admin, the single ``[security]`` token as "admin", and
every action (review approve and reject, retry of a dead row, an API opt-out or resubscribe)
records the name, shown on /admin. And the review queue's trap: a request naming someone else,
received by the real SMTP listener, offers both addresses as separate buttons."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import select, update

from adapters.config import Config
from adapters.events import Actor, Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.models import Evidence, OutboxRow
from inbound.listener import SMTPComponent
from tests.support.environment import ADMIN_TOKEN
from tests.support.mail import REPLIES, message
from tests.support.pages import TOPICS, add_review_item, events, form_field
from tests.support.servers import LiveServer
from tests.webhooks.admin.test_admin import admin_post, login
from webhooks import create_app

DANA, LEE = "dana-token-0123456789abcdef", "lee-token-0123456789abcdefgh"
CONFIG = {
    "topics": TOPICS,
    "http": {"public_url": "http://127.0.0.1"},
    "providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": ""}},
    "admins": [{"name": "Dana Ops", "token_env": "DANA_TOKEN"}, {"name": "Lee", "token_env": "LEE_TOKEN"}],
}
ENV = {"SENDGRID_API_KEY": "SG.test-key", "DANA_TOKEN": DANA, "LEE_TOKEN": LEE}


@pytest.fixture
def named_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]) -> Hub:
    return make_hub(make_config(CONFIG, env=ENV))


@pytest.fixture
def url(named_hub: Hub, serve_app: Callable[[Any], LiveServer]) -> str:
    return serve_app(create_app(hub=named_hub)).url


def signed_in(url: str, token: str) -> requests.Session:
    browser, r = login(url, token)
    assert r.status_code == 303, r.text
    return browser


def evidence(hub: Hub, row_id: int) -> Evidence:
    with hub.sessions() as session:
        return session.get_one(Evidence, row_id)


def test_every_admin_action_records_the_admins_name(named_hub: Hub, url: str) -> None:
    approved, rejected = add_review_item(named_hub, "rae@example.com"), add_review_item(named_hub, "sam@example.com")
    named_hub.record([OptOutEvent(email="uma@example.com", kind=Kind.UNSUBSCRIBE, source=Source.ONECLICK)])
    with named_hub.sessions.begin() as session:
        session.execute(update(OutboxRow).values(state="dead", attempts=3, last_status=400, last_error="bad"))
        dead = session.scalar(select(OutboxRow.id))

    dana, lee, legacy = signed_in(url, DANA), signed_in(url, LEE), signed_in(url, ADMIN_TOKEN)
    assert admin_post(dana, url, f"/admin/review/{approved}/approve").status_code == 303
    assert admin_post(lee, url, f"/admin/review/{rejected}/reject").status_code == 303
    assert admin_post(legacy, url, f"/admin/outbox/{dead}/retry").status_code == 303

    assert (evidence(named_hub, approved).decided_by, evidence(named_hub, rejected).decided_by) == ("Dana Ops", "Lee")
    (rae,) = [e for e in events(named_hub) if e.email == "rae@example.com"]
    assert rae.meta is not None and (rae.meta["approved_by"], rae.meta["requested_by"]) == (
        "Dana Ops",
        "rae@example.com",
    )
    with named_hub.sessions() as session:
        row = session.get_one(OutboxRow, dead)
        assert (row.state, row.retried_by, row.retried_at) == ("pending", "admin", named_hub.clock())

    page = dana.get(f"{url}/admin", timeout=10).text
    listed = page[page.index('id="admin-action-list"') :]
    listed = listed[: listed.index("</table>")]
    for name, action, what in (
        ("Dana Ops", "Approved a review item", f"review #{approved}"),
        ("Lee", "Rejected a review item", f"review #{rejected}"),
        ("admin", "Retried a dead push", f"outbox #{dead} sendgrid"),
    ):
        assert f'<td class="admin-name">{name}</td><td>{action}</td>' in listed and what in listed


def test_a_bearer_token_acts_as_its_admin(named_hub: Hub, url: str) -> None:
    item = add_review_item(named_hub, "vic@example.com")
    r = requests.post(
        f"{url}/admin/review/{item}/approve",
        headers={"Authorization": f"Bearer {LEE}"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303 and evidence(named_hub, item).decided_by == "Lee"
    wrong = requests.get(f"{url}/admin", headers={"Authorization": "Bearer not-a-token"}, timeout=10)
    assert wrong.status_code == 401


def api(url: str, token: str, **body: Any) -> requests.Response:
    return requests.post(
        f"{url}/api/v1/suppressions", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_api_records_the_tokens_admin_and_refuses_another_name(named_hub: Hub, url: str) -> None:
    assert api(url, DANA, email="wes@example.com", reason="asked by phone").status_code == 201
    # a named admin's token is a named admin: the resubscribe lifts the opt-out
    lifted = api(url, LEE, email="wes@example.com", kind="resubscribe", reason="asked again, by letter")
    assert lifted.status_code == 201 and lifted.json()["changed"] and not lifted.json()["state"]["suppressed"]
    refused = api(url, LEE, email="wes@example.com", reason="x", admin="Dana Ops")
    assert refused.status_code == 400 and "Lee" in refused.json()["error"]
    # the shared token names no one: the caller says who acts, as before
    assert api(url, ADMIN_TOKEN, email="xan@example.com", reason="by phone", admin="Sam").status_code == 201
    assert api(url, "no-such-token", email="yul@example.com", reason="x").status_code == 401

    got = [(e.email, e.kind, e.actor, (e.meta or {}).get("admin")) for e in events(named_hub)]
    assert got == [
        ("wes@example.com", "unsubscribe", Actor.ADMIN.value, "Dana Ops"),
        ("wes@example.com", "resubscribe", Actor.ADMIN.value, "Lee"),
        ("xan@example.com", "unsubscribe", Actor.ADMIN.value, "Sam"),
    ]
    dana = signed_in(url, DANA)
    page = dana.get(f"{url}/admin", timeout=10).text
    assert '<td class="admin-name">Lee</td><td>Resubscribed</td>' in page
    history = dana.get(f"{url}/admin/search", params={"email": "wes@example.com"}, timeout=10).text
    assert 'admin: <span class="admin-name">Dana Ops</span>' in history
    assert 'admin: <span class="admin-name">Lee</span>' in history
    status = requests.get(
        f"{url}/api/v1/suppressions/wes@example.com", headers={"Authorization": f"Bearer {DANA}"}, timeout=10
    )
    assert [(e["kind"], e["actor"], e["admin"]) for e in status.json()["events"]] == [
        ("unsubscribe", "admin", "Dana Ops"),
        ("resubscribe", "admin", "Lee"),
    ]


def test_changing_one_admins_token_ends_only_their_sessions(
    named_hub: Hub,
    url: str,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], LiveServer],
) -> None:
    dana, lee = signed_in(url, DANA), signed_in(url, LEE)
    rotated = make_hub(make_config(CONFIG, env={**ENV, "LEE_TOKEN": "lee-new-token-0123456789abcd"}))
    other = serve_app(create_app(hub=rotated)).url
    for browser, expected in ((dana, 200), (lee, 303)):
        cookie = browser.cookies.get("optout_admin")
        r = requests.get(f"{other}/admin", cookies={"optout_admin": cookie}, allow_redirects=False, timeout=10)
        assert r.status_code == expected


def wait_for_review(hub: Hub, timeout: float = 20) -> Evidence:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with hub.sessions() as session:
            row = session.scalar(select(Evidence).where(Evidence.channel == "smtp", Evidence.state == "review"))
            if row is not None:
                return row
        time.sleep(0.05)
    raise AssertionError("the message never reached the review queue")


@pytest.mark.parametrize("choice", ["named", "sender"])
def test_a_request_naming_a_colleague_offers_each_address_apart(named_hub: Hub, url: str, choice: str) -> None:
    smtp = SMTPComponent(named_hub, port=0, dkim_dns=None)
    smtp.start()
    try:
        with smtplib.SMTP(*smtp.address, timeout=10) as client:
            raw = message("Hi, please take my colleague erin@example.com off your list, she left.", subject="Re: news")
            client.sendmail("jane@example.org", [REPLIES], raw)
        item = wait_for_review(named_hub)
    finally:
        smtp.stop()
    assert item.result is not None and item.result["named"] == ["erin@example.com"]

    browser = signed_in(url, DANA)
    page = browser.get(f"{url}/admin", timeout=10).text
    assert "Opt out erin@example.com" in page and "Opt out jane@example.org (the sender)" in page
    button = f"approve-{item.id}-named-1" if choice == "named" else f"approve-{item.id}"
    form = page[page.rindex("<form", 0, page.index(f'id="{button}"')) : page.index(f'id="{button}"')]
    chosen = form_field(form, "email")
    assert chosen == ("erin@example.com" if choice == "named" else "jane@example.org")
    assert admin_post(browser, url, f"/admin/review/{item.id}/approve", email=chosen).status_code == 303

    (event,) = events(named_hub)
    assert (event.email, event.kind, event.evidence_id) == (chosen, "unsubscribe", item.id)
    assert event.meta is not None and (event.meta["approved_by"], event.meta["requested_by"]) == (
        "Dana Ops",
        "jane@example.org",
    )
    # the sender's proof never stands for the colleague
    assert event.verification == "none"
    assert evidence(named_hub, item.id).decided_by == "Dana Ops"
