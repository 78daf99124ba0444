"""Helpers for the web-page tests (one-click, preferences, confirmations, admin, browser)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from adapters.hub import Hub
from adapters.store.models import Event, Evidence
from adapters.store.recipients import RecipientRequest, issue_tokens

TOPICS = [{"name": "newsletter", "title": "Monthly newsletter"}, {"name": "offers", "title": "Special offers"}]


def issue_token(hub: Hub, email: str, topic: str | None = None, campaign: str | None = None) -> str:
    with hub.sessions.begin() as session:
        return issue_tokens(
            session, hub.signer, hub.config, [RecipientRequest(email, topic, campaign)], now=hub.clock()
        )[0].token


def stored_counts(hub: Hub) -> tuple[int, int]:
    """(events, evidence rows) in the store."""
    with hub.sessions() as session:
        return session.scalar(select(func.count()).select_from(Event)), session.scalar(
            select(func.count()).select_from(Evidence)
        )


def events(hub: Hub) -> list[Event]:
    with hub.sessions() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


def form_field(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html)
    assert match, f"no field {name!r} in page"
    return match.group(1)


def forged(token: str) -> str:
    """The token with one character changed (still well-formed base32)."""
    return token[:10] + ("a" if token[10] != "a" else "b") + token[11:]


def without_cookies(response: Any) -> bool:
    return "Set-Cookie" not in response.headers


def add_review_item(
    hub: Hub, address: str | None, raw: bytes = b"From: x@example.com\r\nSubject: please\r\n\r\nmaybe stop?\r\n"
) -> int:
    with hub.sessions.begin() as session:
        row = Evidence(
            channel="smtp",
            source="smtp",
            received_at=hub.clock(),
            content=raw,
            content_type="message/rfc822",
            state="review",
            result={
                "classification": "review",
                "address": address,
                "scope": "global",
                "verification": "none",
                "campaign": None,
                "reason": None,
                "detail": "unclear request",
            },
        )
        session.add(row)
        session.flush()
        return row.id
