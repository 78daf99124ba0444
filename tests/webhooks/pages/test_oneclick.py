"""RFC 8058 one-click unsubscribe over real HTTP (README "Recipients' pages and the admin dashboard")."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import text

from adapters.config import Config
from adapters.hub import Hub
from adapters.store.models import Evidence
from tests.support.pages import events, forged, issue_token, stored_counts, without_cookies
from tests.support.servers import LiveServer
from webhooks import create_app
from webhooks.security import TokenRedactingFilter, redact_tokens

BODY = "List-Unsubscribe=One-Click"


def post(url: str, **kwargs: Any) -> requests.Response:
    return requests.post(url, allow_redirects=False, timeout=10, **kwargs)


def test_urlencoded_post_opts_out_with_200_and_no_cookie(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "Alice@Example.com", campaign="spring-2026")
    r = post(f"{app_url}/u/{token}", data=BODY, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert without_cookies(r)
    assert "Location" not in r.headers
    [event] = events(topic_hub)
    assert (event.email, event.kind, event.scope, event.source, event.verification, event.campaign) == (
        "Alice@example.com",
        "unsubscribe",
        "global",
        "oneclick",
        "token",
        "spring-2026",
    )
    with topic_hub.sessions() as session:
        evidence = session.get(Evidence, event.evidence_id)
        assert (evidence.channel, evidence.source, evidence.content) == ("http", "oneclick", BODY.encode())
        assert token not in str(evidence.meta)


def test_multipart_post_with_topic_token_opts_out_of_that_topic(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "bob@example.com", topic="offers")
    r = post(f"{app_url}/u/{token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200, r.text
    assert [(e.kind, e.scope) for e in events(topic_hub)] == [("unsubscribe", "topic:offers")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"data": "List-Unsubscribe=Yes", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"data": "One-Click", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"json": {"List-Unsubscribe": "One-Click"}},
    ],
    ids=["empty", "wrong-value", "no-field", "json"],
)
def test_post_without_the_exact_body_is_400_and_stores_nothing(
    topic_hub: Hub, app_url: str, kwargs: dict[str, Any]
) -> None:
    token = issue_token(topic_hub, "carol@example.com")
    r = post(f"{app_url}/u/{token}", **kwargs)
    assert r.status_code == 400
    assert r.json() == {"error": "the body must be List-Unsubscribe=One-Click"}  # no text/html in Accept
    assert stored_counts(topic_hub) == (0, 0)


def test_a_database_failure_is_503_so_the_mail_client_retries(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "dave@example.com")
    form = {"data": BODY, "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    with topic_hub.engine.begin() as conn:
        conn.execute(text("ALTER TABLE evidence RENAME TO evidence_away"))
    r = post(f"{app_url}/u/{token}", **form)
    assert r.status_code == 503 and "retry" in r.json()["error"]
    with topic_hub.engine.begin() as conn:
        conn.execute(text("ALTER TABLE evidence_away RENAME TO evidence"))
    assert stored_counts(topic_hub) == (0, 0)
    assert post(f"{app_url}/u/{token}", **form).status_code == 200
    assert stored_counts(topic_hub) == (1, 1)


def test_forged_unknown_and_malformed_tokens_are_404_and_store_nothing(topic_hub: Hub, app_url: str) -> None:
    """A browser (text/html in Accept) gets a page; a mail client or script gets JSON."""
    token = issue_token(topic_hub, "dave@example.com")
    unknown = topic_hub.signer.issue(999_999)
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for bad in (forged(token), unknown, "not-a-token", token[:-1]):
        for method in ("get", "post"):
            for accept in (browser, "*/*", None):
                headers = {"Content-Type": "application/x-www-form-urlencoded"} | ({"Accept": accept} if accept else {})
                r = requests.request(
                    method, f"{app_url}/u/{bad}", data=BODY, headers=headers, timeout=10, allow_redirects=False
                )
                assert r.status_code == 404, (bad, method, accept)
                if accept == browser:
                    assert r.headers["Content-Type"].startswith("text/html") and "not valid" in r.text
                else:
                    assert r.json()["error"] in ("malformed token", "invalid token", "unknown token")
    assert stored_counts(topic_hub) == (0, 0)


def test_case_altered_token_still_opts_out(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "erin@example.com")
    r = post(f"{app_url}/u/{token.upper()}", data=BODY, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert [e.email for e in events(topic_hub)] == ["erin@example.com"]


SCANNERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro) SafeLinks",
    "Barracuda Sentinel (EE)",
    "GoogleImageProxy",
    "curl/8.5.0",
]


def test_get_and_head_never_change_state(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "frank@example.com", topic="newsletter")
    for agent in SCANNERS:
        r = requests.get(f"{app_url}/u/{token}", headers={"User-Agent": agent}, timeout=10)
        assert r.status_code == 200
        assert "fr•••@example.com" in r.text and "Monthly newsletter" in r.text
        assert 'value="One-Click"' in r.text
    assert requests.head(f"{app_url}/u/{token}", timeout=10).status_code == 200
    assert stored_counts(topic_hub) == (0, 0)


def test_token_pages_send_security_headers_and_no_cookie(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "gina@example.com")
    for r in (
        requests.get(f"{app_url}/u/{token}", timeout=10),
        post(f"{app_url}/u/{token}", data=BODY, headers={"Content-Type": "application/x-www-form-urlencoded"}),
    ):
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "script-src" not in r.headers["Content-Security-Policy"]  # default-src 'none': no script at all
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-store"
        assert without_cookies(r)


def test_page_language_follows_accept_language_and_switcher(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "hana@example.com")
    zh = requests.get(f"{app_url}/u/{token}", headers={"Accept-Language": "zh-CN,zh;q=0.9"}, timeout=10)
    assert '<html lang="zh" dir="ltr">' in zh.text and "退订" in zh.text
    ar = requests.get(f"{app_url}/u/{token}", headers={"Accept-Language": "ar-EG"}, timeout=10)
    assert '<html lang="ar" dir="rtl">' in ar.text and "إلغاء الاشتراك" in ar.text
    switched = requests.get(f"{app_url}/u/{token}?lang=en", headers={"Accept-Language": "ar"}, timeout=10)
    assert '<html lang="en" dir="ltr">' in switched.text
    assert f'href="/u/{token}?lang=ar"' in switched.text


def test_topic_titles_are_escaped(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], serve_app: Callable[[Any], LiveServer]
) -> None:
    hub = make_hub(make_config({"topics": [{"name": "x", "title": "<script>alert(1)</script>"}]}))
    url = serve_app(create_app(hub=hub)).url
    r = requests.get(f"{url}/u/{issue_token(hub, 'ivan@example.com', topic='x')}", timeout=10)
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text


def test_tokens_are_redacted_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    token = "abcdefghijklmnopqrstuvwxyz23"
    assert redact_tokens(f'"POST /u/{token} HTTP/1.1" 200') == '"POST /u/abcd… HTTP/1.1" 200'
    assert redact_tokens(f"/preferences/{token}?lang=ar") == "/preferences/abcd…?lang=ar"
    logger = logging.getLogger("test.access")
    logger.addFilter(TokenRedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.access"):
        logger.info("%(r)s %(s)s", {"r": f"GET /u/{token} HTTP/1.1", "s": "200"})
    assert token not in caplog.text and "/u/abcd…" in caplog.text


def test_app_redacts_gunicorn_access_lines(topic_hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    create_app(hub=topic_hub)
    token = issue_token(topic_hub, "jay@example.com")
    with caplog.at_level(logging.INFO, logger="gunicorn.access"):
        logging.getLogger("gunicorn.access").info(
            '%(h)s "%(r)s" %(s)s', {"h": "127.0.0.1", "r": f"POST /u/{token} HTTP/1.1", "s": "200"}
        )
    assert token not in caplog.text and f"/u/{token[:4]}…" in caplog.text
