"""The dashboard's unsettled opt-outs over real HTTP, and the business-day limit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from sqlalchemy import update

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.models import OutboxRow
from tests.support.clock import Clock
from tests.support.environment import ADMIN_TOKEN
from tests.support.servers import LiveServer
from webhooks import create_app
from webhooks.admin.unsettled import business_days_after

CONFIG = {"providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": ""}}}


def test_business_days_skip_saturdays_and_sundays() -> None:
    friday = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    assert business_days_after(friday, 1) == datetime(2026, 11, 30, 15, 30, tzinfo=UTC)  # Monday
    assert business_days_after(friday, 10) == datetime(2026, 12, 11, 15, 30, tzinfo=UTC)
    saturday = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    assert business_days_after(saturday, 10) == datetime(2026, 12, 11, 9, 0, tzinfo=UTC)


def test_opt_outs_not_confirmed_everywhere_are_listed_oldest_first_against_the_limits(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], LiveServer],
    clock: Clock,
) -> None:
    hub = make_hub(make_config(CONFIG, env={"SENDGRID_API_KEY": "SG.test-key"}))
    hub.record([OptOutEvent(email="old@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API)])  # Tuesday noon
    clock.advance(3 * 86400)
    hub.record([OptOutEvent(email="new@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API)])
    hub.record([OptOutEvent(email="done@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API)])
    clock.advance(3600)
    with hub.sessions.begin() as session:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.email == "old@example.com")
            .values(state="dead", attempts=3, last_status=401, last_error="401 authorization required")
        )
        session.execute(update(OutboxRow).where(OutboxRow.email == "done@example.com").values(state="done"))
    url = serve_app(create_app(hub=hub)).url
    page = requests.get(f"{url}/admin", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert page.status_code == 200
    section = page.text.split('id="unsettled"', 1)[1].split("</section>", 1)[0]
    assert "done@example.com" not in section
    old, new = section.index("old@example.com"), section.index("new@example.com")
    assert old < new  # oldest first
    old_row, new_row = section[old:new], section[new:]
    assert "3 d 1 h" in old_row and "2026-11-26 12:00 <strong>overdue</strong>" in old_row  # past the 2 days
    assert "2026-12-08 12:00</td>" in old_row  # 10 business days from a Tuesday: not yet
    assert "sendgrid: dead, 3 attempts — 401 authorization required" in old_row
    assert "1 h 0 min" in new_row and "overdue" not in new_row and "sendgrid: pending" in new_row
