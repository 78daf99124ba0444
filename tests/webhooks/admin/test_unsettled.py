"""The dashboard's unsettled opt-outs over real HTTP, and the business-day limit."""

from __future__ import annotations

from collections.abc import Callable
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

CONFIG = {"providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": ""}}}


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
    assert "2026-12-08 24:00</td>" in old_row  # the end of the 10th business day after a Tuesday: not yet
    assert "sendgrid: dead, 3 attempts — 401 authorization required" in old_row
    assert "1 h 0 min" in new_row and "overdue" not in new_row and "sendgrid: pending" in new_row
    counts = section.split('id="overdue-counts">', 1)[1].split("</p>", 1)[0]
    assert counts == ("2-day limit: <strong>1</strong> overdue · 10-business-day limit: <strong>0</strong> overdue")


def test_holidays_move_the_business_day_limit(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], LiveServer],
    clock: Clock,
) -> None:
    """Received Tuesday 24 Nov: the 10th business day is Tuesday 8 Dec, or Wednesday 9 Dec when
    8 Dec is a holiday. On Wednesday noon only the first is past."""
    config = {**CONFIG, "compliance": {"holidays": ["2026-12-08"]}}
    hub = make_hub(make_config(config, env={"SENDGRID_API_KEY": "SG.test-key"}))
    hub.record([OptOutEvent(email="late@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API)])
    url = serve_app(create_app(hub=hub)).url

    def section() -> str:
        page = requests.get(f"{url}/admin", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
        assert page.status_code == 200
        return page.text.split('id="unsettled"', 1)[1].split("</section>", 1)[0]

    clock.advance(15 * 86400)  # Wednesday 9 Dec, noon
    text = section()
    assert "2026-12-09 24:00</td>" in text  # not yet past
    assert "2-day limit: <strong>1</strong> overdue · 10-business-day limit: <strong>0</strong> overdue" in text
    assert 'optout_requests_overdue{limit="10bd"} 0.0' in requests.get(f"{url}/metrics", timeout=10).text
    clock.advance(12 * 3600)  # 00:00 on Thursday 10 Dec: the end of the 9th has passed
    text = section()
    assert "2026-12-09 24:00 <strong>overdue</strong></td>" in text
    assert "10-business-day limit: <strong>1</strong> overdue" in text
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert 'optout_requests_overdue{limit="2d"} 1.0' in metrics
    assert 'optout_requests_overdue{limit="10bd"} 1.0' in metrics
