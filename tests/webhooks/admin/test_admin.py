"""The admin dashboard over real HTTP: login, counts, chart, review queue, dead letters, search."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select, update

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.models import Evidence, OutboxRow
from adapters.worker.lookups import resolve_pending_lookups
from tests.support.clock import Clock
from tests.support.environment import ADMIN_TOKEN, TEST_SECRET
from tests.support.pages import TOPICS, add_review_item, events, form_field, issue_token
from tests.support.rates_history import seed_rates_history
from tests.support.servers import LiveServer
from webhooks import create_app
from webhooks.security import CSRF_FIELD

ADMIN_CONFIG = {
    "topics": TOPICS,
    "http": {"public_url": "http://127.0.0.1"},
    "providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": ""}},
}
ADMIN_ENV = {"SENDGRID_API_KEY": "SG.test-key"}


@pytest.fixture
def admin_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]) -> Hub:
    return make_hub(make_config(ADMIN_CONFIG, env=ADMIN_ENV))


@pytest.fixture
def app_url(admin_hub: Hub, serve_app: Callable[[Any], LiveServer]) -> str:
    return serve_app(create_app(hub=admin_hub)).url


def login(url: str, token: str = ADMIN_TOKEN) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    page = browser.get(f"{url}/admin/login", timeout=10)
    r = browser.post(
        f"{url}/admin/login",
        data={"token": token, CSRF_FIELD: form_field(page.text, CSRF_FIELD)},
        allow_redirects=False,
        timeout=10,
    )
    return browser, r


def admin_post(browser: requests.Session, url: str, path: str, **fields: str) -> requests.Response:
    page = browser.get(f"{url}/admin", timeout=10)
    return browser.post(
        f"{url}{path}",
        data={CSRF_FIELD: form_field(page.text, CSRF_FIELD), **fields},
        allow_redirects=False,
        timeout=10,
    )


def test_without_a_session_every_admin_url_redirects_to_login(admin_hub: Hub, app_url: str) -> None:
    for method, path in (
        ("get", "/admin"),
        ("get", "/admin/search?email=a@example.com"),
        ("post", "/admin/outbox/1/retry"),
        ("post", "/admin/review/1/approve"),
    ):
        r = requests.request(method, f"{app_url}{path}", allow_redirects=False, timeout=10)
        assert r.status_code == 303, path
        assert r.headers["Location"].startswith("/admin/login")
    assert requests.get(f"{app_url}/admin", timeout=10).url.startswith(f"{app_url}/admin/login?next=/admin")


def test_login_returns_only_to_a_plain_dashboard_path(app_url: str) -> None:
    """``next`` with CR/LF once split the Location header (a 500); another site is not followed."""
    browser = requests.Session()
    for target, location in [
        ("/admin/search", "/admin/search"),
        ("/admin\r\nSet-Cookie: x=1", "/admin"),
        ("/admin/%0d%0aX-Injected: 1", "/admin"),
        ("//evil.example/admin", "/admin"),
        ("/admin/../../evil", "/admin"),
        ("https://evil.example/admin", "/admin"),
    ]:
        page = browser.get(f"{app_url}/admin/login", timeout=10)
        r = browser.post(
            f"{app_url}/admin/login",
            params={"next": target},
            data={"token": ADMIN_TOKEN, CSRF_FIELD: form_field(page.text, CSRF_FIELD)},
            allow_redirects=False,
            timeout=10,
        )
        assert (r.status_code, r.headers["Location"]) == (303, location), target
        assert "X-Injected" not in r.headers and "x=1" not in r.headers.get("Set-Cookie", "")


def test_wrong_token_is_401_and_grants_nothing(app_url: str) -> None:
    browser, r = login(app_url, "wrong-token")
    assert r.status_code == 401 and "Wrong admin token." in r.text
    assert browser.get(f"{app_url}/admin", allow_redirects=False, timeout=10).status_code == 303


def test_a_script_with_the_bearer_token_needs_no_login(admin_hub: Hub, app_url: str) -> None:
    """Contract §3: the admin token is a bearer token for /api and /admin. Browsers cannot be
    made to send the header cross-site, so such requests need no CSRF form token either."""
    admin_hub.record([OptOutEvent(email="ivy@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API, reason="phone")])
    with admin_hub.sessions.begin() as session:
        session.execute(
            update(OutboxRow).values(state="dead", attempts=25, last_status=400, last_error="invalid email")
        )
        row_id = session.scalar(select(OutboxRow.id))
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    page = requests.get(f"{app_url}/admin", headers=bearer, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and f'id="retry-{row_id}"' in page.text
    assert (
        requests.post(
            f"{app_url}/admin/outbox/{row_id}/retry", headers=bearer, allow_redirects=False, timeout=10
        ).status_code
        == 303
    )
    with admin_hub.sessions() as session:
        assert session.get(OutboxRow, row_id).state == "pending"
    for wrong in ("Bearer wrong-token", "Bearer ", "bearer  x"):
        r = requests.get(f"{app_url}/admin", headers={"Authorization": wrong}, allow_redirects=False, timeout=10)
        assert r.status_code == 401 and r.json() == {"error": "missing or invalid bearer token"}, wrong
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="optout-hub"'
    r = requests.post(
        f"{app_url}/admin/review/1/approve",
        headers={"Authorization": "Bearer wrong-token"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 401
    for path in (
        "/admin/outbox/99999999999999999999999/retry",
        f"/admin/review/{2**63}/approve",
        f"/admin/review/{2**63}/reject",
    ):
        assert (
            requests.post(f"{app_url}{path}", headers=bearer, allow_redirects=False, timeout=10).status_code == 404
        ), path  # not a 500
    assert (
        requests.post(
            f"{app_url}/admin/review/{2**63 - 1}/approve", headers=bearer, allow_redirects=False, timeout=10
        ).status_code
        == 400
    )


def test_login_form_needs_its_csrf_token(app_url: str) -> None:
    browser = requests.Session()
    browser.get(f"{app_url}/admin/login", timeout=10)
    r = browser.post(f"{app_url}/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False, timeout=10)
    assert r.status_code == 400
    assert browser.get(f"{app_url}/admin", allow_redirects=False, timeout=10).status_code == 303


def test_login_sets_a_strict_httponly_cookie_keyed_by_a_derived_key(admin_hub: Hub, app_url: str) -> None:
    browser, r = login(app_url)
    assert r.status_code == 303 and r.headers["Location"] == "/admin"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert browser.get(f"{app_url}/admin", timeout=10).status_code == 200
    app = create_app(hub=admin_hub)
    assert app.secret_key == admin_hub.signer.derive_key("admin session cookie") != TEST_SECRET.encode()


def test_session_cookie_is_secure_behind_https(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]
) -> None:
    app = create_app(hub=make_hub(make_config()))
    client = app.test_client()
    page = client.get("/admin/login")
    assert "Secure" in page.headers["Set-Cookie"]


def test_no_admin_token_configured_refuses_login(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], serve_app: Callable[[Any], LiveServer]
) -> None:
    hub = make_hub(
        make_config(
            {
                "http": {"public_url": "http://127.0.0.1"},
                "security": {"token_secret_env": "OPTOUT_HUB_SECRET", "admin_token_env": ""},
            }
        )
    )
    url = serve_app(create_app(hub=hub)).url
    _, r = login(url, "")
    assert r.status_code == 401 and "Admin access is off" in r.text
    assert (
        requests.get(
            f"{url}/admin", headers={"Authorization": "Bearer "}, allow_redirects=False, timeout=10
        ).status_code
        == 401
    )


def test_counts_and_chart_follow_opt_outs(admin_hub: Hub, app_url: str) -> None:
    browser, _ = login(app_url)
    before = browser.get(f"{app_url}/admin", timeout=10).text
    assert "<rect x=" not in before
    token = issue_token(admin_hub, "pat@example.com", campaign="autumn")
    issue_token(admin_hub, "quinn@example.com", campaign="autumn")
    requests.post(
        f"{app_url}/u/{token}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    page = browser.get(f"{app_url}/admin", timeout=10).text
    assert '<td>One-click link</td><td class="num">1</td><td class="num">100.0%</td>' in page
    assert '<td>Unsubscribe</td><td class="num">1</td>' in page
    assert "<title>2026-11-24 One-click link: 1</title>" in page
    assert '<td>autumn</td><td class="num">2</td><td class="num">1</td><td class="num">50.0%</td>' in page
    assert '<td>sendgrid</td><td class="num">1</td>' in page  # one pending push


def test_approve_and_reject_review_items(admin_hub: Hub, app_url: str) -> None:
    browser, _ = login(app_url)
    named = add_review_item(admin_hub, "rae@example.com")
    unnamed = add_review_item(admin_hub, None)
    rejected = add_review_item(admin_hub, "sam@example.com")
    page = browser.get(f"{app_url}/admin", timeout=10).text
    assert f'id="review-{named}"' in page and "maybe stop?" in page
    r = admin_post(browser, app_url, f"/admin/review/{named}/approve")
    assert r.status_code == 303
    assert admin_post(browser, app_url, f"/admin/review/{named}/approve").status_code == 400  # decided once
    assert admin_post(browser, app_url, f"/admin/review/{unnamed}/approve").status_code == 400  # needs an address
    assert admin_post(browser, app_url, f"/admin/review/{unnamed}/approve", email="Tia@Example.com").status_code == 303
    assert admin_post(browser, app_url, f"/admin/review/{rejected}/reject").status_code == 303
    stored = events(admin_hub)
    assert [(e.email, e.kind, e.source, e.provider_event_id, e.reason, e.evidence_id) for e in stored] == [
        ("rae@example.com", "unsubscribe", "smtp", f"smtp:{named}", "approved by admin", named),
        ("Tia@example.com", "unsubscribe", "smtp", f"smtp:{unnamed}", "approved by admin", unnamed),
    ]
    with admin_hub.sessions() as session:
        assert [session.get(Evidence, i).state for i in (named, unnamed, rejected)] == [
            "approved",
            "approved",
            "rejected",
        ]
    assert "Nothing to review." in browser.get(f"{app_url}/admin", timeout=10).text


def test_retry_a_dead_letter(admin_hub: Hub, app_url: str, clock: Clock) -> None:
    admin_hub.record([OptOutEvent(email="uma@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API, reason="phone")])
    with admin_hub.sessions.begin() as session:
        session.execute(
            update(OutboxRow).values(state="dead", attempts=25, last_status=400, last_error="invalid email")
        )
        row_id = session.scalar(select(OutboxRow.id))
    browser, _ = login(app_url)
    page = browser.get(f"{app_url}/admin", timeout=10).text
    assert f'id="retry-{row_id}"' in page and "invalid email" in page
    clock.advance(30)
    assert admin_post(browser, app_url, f"/admin/outbox/{row_id}/retry").status_code == 303
    with admin_hub.sessions() as session:
        row = session.get(OutboxRow, row_id)
        assert (row.state, row.attempts, row.due_at) == ("pending", 0, clock.now)
    assert admin_post(browser, app_url, f"/admin/outbox/{row_id}/retry").status_code == 400  # no longer dead


def test_retry_every_dead_letter_of_a_provider(admin_hub: Hub, app_url: str, clock: Clock) -> None:
    admin_hub.record(
        [OptOutEvent(email=f"d{i}@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API) for i in range(3)]
    )
    with admin_hub.sessions.begin() as session:
        session.execute(update(OutboxRow).values(state="dead", attempts=4, last_status=401, last_error="bad key"))
    browser, _ = login(app_url)
    page = browser.get(f"{app_url}/admin", timeout=10).text
    assert 'id="retry-dead-sendgrid"' in page
    assert browser.post(f"{app_url}/admin/outbox/sendgrid/retry-dead", timeout=10).status_code == 400  # no CSRF
    clock.advance(30)
    done = admin_post(browser, app_url, "/admin/outbox/sendgrid/retry-dead")
    assert done.status_code == 303 and done.headers["Location"].endswith("/admin#outbox")
    assert "3 dead rows queued again" in browser.get(f"{app_url}/admin", timeout=10).text
    with admin_hub.sessions() as session:
        rows = session.scalars(select(OutboxRow)).all()
    assert {(r.state, r.attempts, r.due_at) for r in rows} == {("pending", 0, clock.now)}
    assert 'id="retry-dead-sendgrid"' not in browser.get(f"{app_url}/admin", timeout=10).text


def test_admin_forms_need_csrf(admin_hub: Hub, app_url: str) -> None:
    item = add_review_item(admin_hub, "vic@example.com")
    browser, _ = login(app_url)
    r = browser.post(f"{app_url}/admin/review/{item}/approve", allow_redirects=False, timeout=10)
    assert r.status_code == 400
    assert events(admin_hub) == []


def test_search_shows_history_with_evidence(admin_hub: Hub, app_url: str, clock: Clock) -> None:
    token = issue_token(admin_hub, "wes@example.com", topic="offers")
    requests.post(
        f"{app_url}/u/{token}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TestMail/1.0"},
        timeout=10,
    )
    browser, _ = login(app_url)
    page = browser.get(f"{app_url}/admin/search", params={"email": "WES@example.com"}, timeout=10).text
    assert "Suppressed at: topic:offers" in page
    assert "List-Unsubscribe=One-Click" in page and "TestMail/1.0" in page
    assert token not in page
    bad = browser.get(f"{app_url}/admin/search", params={"email": "not an address"}, timeout=10)
    assert bad.status_code == 400


def test_changing_the_admin_token_ends_sessions(
    admin_hub: Hub,
    app_url: str,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], LiveServer],
) -> None:
    browser, _ = login(app_url)
    rotated = make_hub(
        make_config(ADMIN_CONFIG, env={**ADMIN_ENV, "OPTOUT_HUB_ADMIN_TOKEN": "another-admin-token-123456"})
    )
    url = serve_app(create_app(hub=rotated)).url
    cookie = browser.cookies.get("optout_admin")
    r = requests.get(f"{url}/admin", cookies={"optout_admin": cookie}, allow_redirects=False, timeout=10)
    assert r.status_code == 303


def test_opt_outs_waiting_for_a_hubspot_contact_address_are_shown(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], serve_app: Callable[[Any], LiveServer]
) -> None:
    from tests.support.hubspot import SECRET, TOKEN, queue

    providers = {
        "hubspot": {"enabled": True, "base_url": "http://127.0.0.1:9"}
    }  # the discard port: HubSpot unreachable
    hub = make_hub(
        make_config(
            {**ADMIN_CONFIG, "providers": providers},
            env={"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_CLIENT_SECRET": SECRET},
        )
    )
    url = serve_app(create_app(hub=hub)).url
    browser, _ = login(url)
    assert "No opt-out waits for a contact's address." in browser.get(f"{url}/admin", timeout=10).text

    queue(hub, ["501", "502"])
    assert resolve_pending_lookups(hub, requests.Session()) == 0
    page = browser.get(f"{url}/admin", timeout=10).text
    assert "2 provider opt-outs wait for the worker to read their contact's address; oldest received 2026-11-24" in page
    assert page.count('id="lookup-') == 2
    assert '<td>hubspot</td><td>501</td><td class="num">1</td>' in page and "ConnectionError" in page
    assert TOKEN not in page and SECRET not in page
    assert 'optout_lookups_pending{provider="hubspot"} 2.0' in requests.get(f"{url}/metrics", timeout=10).text


def test_mail_waiting_for_classification_shows_its_age(admin_hub: Hub, app_url: str, clock: Clock) -> None:
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert 'id="inbound-backlog"' not in requests.get(f"{app_url}/admin", headers=bearer, timeout=10).text
    with admin_hub.sessions.begin() as session:
        session.add(
            Evidence(
                channel="smtp",
                source="smtp",
                received_at=clock() - timedelta(hours=1),
                content=b"x",
                meta={},
                state="pending",
            )
        )
    page = requests.get(f"{app_url}/admin", headers=bearer, timeout=10).text
    assert "the oldest has waited 3600 s" in page


def test_rates_over_a_date_range_with_labels_and_csv(admin_hub: Hub, app_url: str, clock: Clock) -> None:
    """The seeded history of tests/support/rates_history.py, counted by hand there."""
    seed_rates_history(admin_hub, clock)
    browser, _ = login(app_url)
    in_range = {"since": "2026-11-20", "until": "2026-11-24"}
    page = browser.get(f"{app_url}/admin", params=in_range, timeout=10).text
    assert 'name="since" id="since" value="2026-11-20"' in page
    source = page[page.index('id="by-source"') : page.index("</table>", page.index('id="by-source"'))]
    assert source.count("<tr>") == 5 and "Import" not in source  # imports are drawn apart
    assert '<td>Preference centre</td><td class="num">2</td><td class="num">20.0%</td>' in source
    assert "Imported, not counted above: 3" in page
    people = page[page.index('id="reasons-person"') : page.index('id="reasons-machine"')]
    assert "Another reason: I moved abroad" in people and "Too many emails" in people and "Bounce" not in people
    assert (
        '<td>Monthly newsletter</td><td class="num">4</td><td class="num">1</td><td class="num">25.0%</td>'
        '<td class="num">1</td>' in page
    )
    assert '<td>ghost</td><td class="num">0</td><td class="num">1</td><td class="num">—</td>' in page
    assert page.count('<rect x="') == 7 + 1  # a bar per day and source: 21st, 22nd (2), 23rd, 24th (3); import
    assert "<title>2026-11-23 Import: 3</title>" in page[page.index('id="imports-chart"') :]

    csv_url = f"{app_url}/admin/rates/campaign.csv"
    r = browser.get(csv_url, params=in_range, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["Content-Disposition"] == 'attachment; filename="optout-rates-campaign-2026-11-20-2026-11-24.csv"'
    assert r.text.splitlines() == [
        "code,recipients,opt-outs,rate %,complaints,complaint rate %",
        "autumn,5,2,40.00,1,20.00",
        "ghost,0,1,,0,",
    ]
    # the default range is the last 30 days: d's opt-out of the 10th counts there
    topic = browser.get(f"{app_url}/admin/rates/topic.csv", timeout=10).text.splitlines()
    assert topic[1] == "newsletter,Monthly newsletter,4,2,50.00,1"
    for bad in ({"since": "last week"}, {"since": "2026-11-24", "until": "2026-11-01"}):
        assert browser.get(f"{app_url}/admin", params=bad, timeout=10).status_code == 400
        assert browser.get(csv_url, params=bad, timeout=10).status_code == 400
    assert browser.get(f"{app_url}/admin/rates/weather.csv", timeout=10).status_code == 404
    assert requests.get(csv_url, timeout=10, allow_redirects=False).status_code == 303  # signed-in admins only
