"""Recipients' and admins' pages in a real browser (Debian chromium through Playwright)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import requests
from playwright.sync_api import Page
from sqlalchemy import select, update

from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.models import Evidence, OutboxRow
from adapters.store.queries import address_state
from tests.support.environment import ADMIN_TOKEN
from tests.support.pages import add_review_item, events, issue_token

Shot = Callable[[Page, str], Path]


def state(hub: Hub, email: str) -> dict:
    with hub.sessions() as session:
        return address_state(session, email)


def test_scanner_get_does_nothing_and_the_button_opts_out(
    web_hub: Hub, app_url: str, new_page: Callable[..., Page], shot: Shot
) -> None:
    token = issue_token(web_hub, "amy@example.com", topic="newsletter", campaign="c-7")
    page = new_page()
    page.goto(f"{app_url}/u/{token}")  # what a link scanner or prefetcher does
    page.reload()
    assert "a•••@example.com" in page.inner_text("#question")
    assert "Monthly newsletter" in page.inner_text("#question")
    shot(page, "confirm")
    assert events(web_hub) == []
    page.click("#unsubscribe")
    page.wait_for_selector("#done")
    shot(page, "done")
    assert page.url == f"{app_url}/u/{token}"  # answered in place: no redirect
    assert [(e.kind, e.scope, e.source, e.campaign) for e in events(web_hub)] == [
        ("unsubscribe", "topic:newsletter", "oneclick", "c-7")
    ]
    assert page.context.cookies() == []


def test_preference_centre_changes_a_topic_stores_a_reason_and_resubscribes(
    web_hub: Hub, app_url: str, new_page: Callable[..., Page], shot: Shot
) -> None:
    token = issue_token(web_hub, "bea@example.com")
    page = new_page()
    page.goto(f"{app_url}/preferences/{token}")
    shot(page, "centre")
    page.uncheck("#topic-offers")
    page.select_option("#reason", "too_many")
    page.fill("#reason-text", "Daily is too much")
    page.click("#save")
    page.wait_for_selector("#message")
    shot(page, "saved")
    assert not page.is_checked("#topic-offers") and page.is_checked("#topic-newsletter")
    [event] = events(web_hub)
    assert (event.kind, event.scope, event.reason) == ("unsubscribe", "topic:offers", "too_many: Daily is too much")
    page.click("#unsubscribe-all")
    page.wait_for_selector("#resubscribe")
    shot(page, "all-off")
    assert state(web_hub, "bea@example.com")["scopes"] == ["global", "topic:offers"]
    consent = page.inner_text("#consent-all")
    page.click("#resubscribe")
    page.wait_for_selector("#message")
    shot(page, "resubscribed")
    assert state(web_hub, "bea@example.com")["scopes"] == ["topic:offers"]
    resub = events(web_hub)[-1]
    assert resub.kind == "resubscribe" and resub.meta["consent"]["wording"] == consent


def test_arabic_page_renders_right_to_left(
    web_hub: Hub, app_url: str, new_page: Callable[..., Page], shot: Shot
) -> None:
    token = issue_token(web_hub, "cai@example.com")
    page = new_page(locale="ar-EG")
    page.goto(f"{app_url}/u/{token}")
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    assert page.inner_text("h1") == "إلغاء الاشتراك"
    heading = page.locator("h1").bounding_box()
    card = page.locator(".card").bounding_box()
    assert heading["x"] + heading["width"] > card["x"] + card["width"] - 40  # starts at the right edge
    shot(page, "ar")
    page.click("a[lang=zh]")
    assert page.evaluate("document.documentElement.lang") == "zh"
    assert page.evaluate("getComputedStyle(document.body).direction") == "ltr"
    assert page.inner_text("h1") == "退订"
    shot(page, "zh")
    page.goto(f"{app_url}/preferences/{token}?lang=ar")
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    shot(page, "ar-preferences")


def test_admin_logs_in_sees_counts_change_approves_and_retries(
    web_hub: Hub, app_url: str, new_page: Callable[..., Page], shot: Shot
) -> None:
    item = add_review_item(web_hub, "dee@example.com")
    web_hub.record(
        [OptOutEvent(email="eli@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API, reason="asked by phone")]
    )
    with web_hub.sessions.begin() as session:
        session.execute(
            update(OutboxRow).values(state="dead", attempts=25, last_status=400, last_error="invalid email address")
        )
        dead = session.scalar(select(OutboxRow.id))
    page = new_page()
    page.goto(f"{app_url}/admin")
    assert "/admin/login" in page.url
    page.fill("#token", "wrong")
    page.click("#sign-in")
    assert page.inner_text("#login-error") == "Wrong admin token."
    shot(page, "login-refused")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#sign-in")
    page.wait_for_selector("#daily-chart")
    assert page.url == f"{app_url}/admin"
    assert page.locator("#daily-chart rect").count() == 1
    assert page.inner_text("#by-source") == "Admin (API)\t1\t100.0%"
    shot(page, "dashboard")

    token = issue_token(web_hub, "fay@example.com")
    requests.post(
        f"{app_url}/u/{token}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    page.reload()
    assert set(page.inner_text("#by-source").splitlines()) == {"Admin (API)\t1\t50.0%", "One-click link\t1\t50.0%"}
    assert page.locator("#daily-chart rect").count() == 2

    page.click(f"#approve-{item}")
    page.wait_for_selector("#flash")
    assert "Nothing to review." in page.inner_text("#review")
    shot(page, "approved")
    assert state(web_hub, "dee@example.com")["suppressed"] is True
    with web_hub.sessions() as session:
        assert session.get(Evidence, item).state == "approved"

    page.click(f"#retry-{dead}")
    page.wait_for_selector("#flash")
    shot(page, "retried")
    with web_hub.sessions() as session:
        assert session.get(OutboxRow, dead).state == "pending"
    cookie = next(c for c in page.context.cookies() if c["name"] == "optout_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"

    page.fill("#search-email", "fay@example.com")
    page.press("#search-email", "Enter")
    page.wait_for_selector("#history")
    assert "List-Unsubscribe=One-Click" in page.content()
    shot(page, "search")
