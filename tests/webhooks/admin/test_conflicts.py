"""The dashboard's consent conflicts over real HTTP."""

from __future__ import annotations

import re
from datetime import timedelta

import requests

from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from tests.support.clock import Clock
from tests.support.servers import LiveServer


def conflict_rows(html: str) -> list[list[str]]:
    section = html[html.index('id="conflict-list"') :]
    section = section[: section.index("</table>")]
    return [re.findall(r"<td[^>]*>(?:<a [^>]*>)?([^<]*)", row) for row in section.split("<tr>")[2:]]


def test_an_unproven_resubscribe_is_listed_with_the_opt_out_it_could_not_lift(
    hub: Hub, live_app: LiveServer, admin_headers: dict[str, str], clock: Clock
) -> None:
    page = requests.get(f"{live_app.url}/admin", headers=admin_headers, timeout=10)
    assert page.status_code == 200 and conflict_rows(page.text) == [["None yet"]]
    hub.record([OptOutEvent("ann@example.com", Kind.UNSUBSCRIBE, Source.SMTP, occurred_at=clock())])
    later = clock() + timedelta(minutes=1)
    hub.record([OptOutEvent("ann@example.com", Kind.RESUBSCRIBE, Source.API, occurred_at=later, reason="asked")])
    page = requests.get(f"{live_app.url}/admin", headers=admin_headers, timeout=10)
    assert conflict_rows(page.text) == [["2026-11-24 12:00:00", "ann@example.com", "global", "api", "staff", "smtp"]]
