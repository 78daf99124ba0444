"""The admin/sender JSON API over real HTTP."""

from __future__ import annotations

import requests
from sqlalchemy import select, text

from adapters.hub import Hub
from adapters.store.models import Recipient
from tests.support.servers import LiveServer


def test_missing_or_wrong_token_is_401(live_app: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = requests.get(f"{live_app.url}/api/v1/suppressions/a@example.com", headers=headers, timeout=5)
        assert r.status_code == 401
        assert r.json() == {"error": "missing or invalid bearer token"}


def test_add_then_status_then_check(live_app: LiveServer, admin_headers: dict[str, str]) -> None:
    r = requests.post(
        f"{live_app.url}/api/v1/suppressions",
        json={"email": "Bob@Example.COM", "reason": "asked by phone"},
        headers=admin_headers,
        timeout=5,
    )
    assert r.status_code == 201, r.text
    assert r.json()["changed"] is True
    r = requests.get(f"{live_app.url}/api/v1/suppressions/bob@example.com", headers=admin_headers, timeout=5)
    body = r.json()
    assert body["email"] == "Bob@example.com"
    assert body["suppressed"] is True and body["scopes"] == ["global"]
    assert [e["source"] for e in body["events"]] == ["api"]
    assert body["events"][0]["reason"] == "asked by phone"
    r = requests.post(
        f"{live_app.url}/api/v1/suppressions/check",
        json={"emails": ["BOB@example.com", "carol@example.com", "not-an-address"]},
        headers=admin_headers,
        timeout=5,
    )
    assert r.json() == {"suppressed": ["BOB@example.com"], "invalid": ["not-an-address"]}


def test_text_databases_refuse_is_stored_cleaned(live_app: LiveServer, admin_headers: dict[str, str]) -> None:
    body = b'{"email": "ann@example.com", "reason": "by phone\\u0000 \\udc80"}'
    headers = {**admin_headers, "Content-Type": "application/json"}
    r = requests.post(f"{live_app.url}/api/v1/suppressions", data=body, headers=headers, timeout=5)
    assert r.status_code == 201, r.text
    r = requests.get(f"{live_app.url}/api/v1/suppressions/ann@example.com", headers=admin_headers, timeout=5)
    assert r.json()["events"][0]["reason"] == "by phone\ufffd \ufffd"


def test_text_databases_refuse_in_a_campaign_or_topic_is_never_a_5xx(
    live_app: LiveServer, admin_headers: dict[str, str], hub: Hub
) -> None:
    """A NUL or a lone surrogate in a campaign name or a topic reached the database and failed
    the request with a 500; it is cleaned at the edge like every other free text."""
    headers = {**admin_headers, "Content-Type": "application/json"}
    body = b'{"recipients": [{"email": "ann@example.com", "campaign": "spring\\u0000 \\udc80"}]}'
    r = requests.post(f"{live_app.url}/api/v1/headers", data=body, headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    with hub.sessions() as session:
        assert session.scalars(select(Recipient.campaign)).all() == ["spring\ufffd \ufffd"]
    body = b'{"emails": ["ann@example.com"], "topic": "news\\u0000\\udc80"}'
    r = requests.post(f"{live_app.url}/api/v1/suppressions/check", data=body, headers=headers, timeout=5)
    assert (r.status_code, r.json()) == (200, {"suppressed": [], "invalid": []})
    body = b'{"recipients": [{"email": "ann@example.com", "topic": "\\udc80"}]}'
    r = requests.post(f"{live_app.url}/api/v1/headers", data=body, headers=headers, timeout=5)
    assert r.status_code == 400 and "unknown topic" in r.json()["error"]


def test_an_address_with_a_line_break_in_the_path_is_a_documented_404(
    live_app: LiveServer, admin_headers: dict[str, str]
) -> None:
    """Found by schemathesis (tests/webhooks/test_fuzz.py): no route matches a path with a line
    break, so the answer is Flask's 404, which the OpenAPI document did not list."""
    r = requests.get(f"{live_app.url}/api/v1/suppressions/ann%0A@example.com", headers=admin_headers, timeout=5)
    assert r.status_code == 404 and "error" in r.json()
    document = requests.get(f"{live_app.url}/api/v1/openapi.json", timeout=5).json()
    assert "404" in document["paths"]["/api/v1/suppressions/{email}"]["get"]["responses"]


def test_json_nested_too_deeply_is_400_naming_the_problem(live_app: LiveServer, admin_headers: dict[str, str]) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"email": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        headers = {**admin_headers, "Content-Type": "application/json"}
        r = requests.post(f"{live_app.url}/api/v1/suppressions", data=body, headers=headers, timeout=10)
        assert (r.status_code, r.json()) == (400, {"error": "body is JSON nested too deeply"})


def test_bad_input_is_400_json(live_app: LiveServer, admin_headers: dict[str, str]) -> None:
    url = f"{live_app.url}/api/v1/suppressions"
    cases = [
        (b"{not json", "application/json"),
        (b'{"email": "a@example.com"}', "text/plain"),
        (b"[]", "application/json"),
        (b'{"email": "a@example.com"}', "application/json"),  # no reason
        (b'{"email": "nope", "reason": "x"}', "application/json"),
        (b'{"email": "a@example.com", "reason": "x", "kind": "maybe"}', "application/json"),
    ]
    for body, ctype in cases:
        r = requests.post(url, data=body, headers={**admin_headers, "Content-Type": ctype}, timeout=5)
        assert r.status_code == 400, (body, r.text)
        assert "error" in r.json()
    r = requests.get(f"{live_app.url}/api/v1/suppressions/a@example.com", headers=admin_headers, timeout=5)
    assert r.json()["events"] == []


def test_headers_in_bulk_resolve_to_their_recipients(live_app: LiveServer, admin_headers: dict[str, str], hub) -> None:
    from adapters.store.recipients import resolve_token

    recipients = [{"email": f"R{i}@Example.com", "campaign": f"c{i % 3}"} for i in range(500)]
    r = requests.post(
        f"{live_app.url}/api/v1/headers", json={"recipients": recipients}, headers=admin_headers, timeout=30
    )
    assert r.status_code == 200, r.text
    issued = r.json()["headers"]
    assert len(issued) == 500
    first = issued[0]
    assert first["email"] == "R0@example.com"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mailto, url = [part.strip(" <>") for part in first["List-Unsubscribe"].split(",")]
    assert mailto.startswith("mailto:unsub-") and mailto.endswith("@unsubscribe.example.com")
    token = url.rsplit("/", 1)[1]
    assert url == f"https://unsubscribe.example.com/u/{token}"
    with hub.sessions() as session:
        recipient = resolve_token(session, hub.signer, token)
    assert (recipient.email, recipient.topic, recipient.campaign) == ("R0@example.com", "", "c0")


def test_headers_limits_and_errors(live_app: LiveServer, admin_headers: dict[str, str]) -> None:
    url = f"{live_app.url}/api/v1/headers"
    too_many = {"recipients": [{"email": f"a{i}@example.com"} for i in range(10_001)]}
    for body, fragment in [
        (too_many, "at most 10000"),
        ({"recipients": [{"email": "a@example.com", "topic": "nope"}]}, "unknown topic"),
        ({"recipients": [{"mail": "a@example.com"}]}, "recipients[0].email"),
        ({"recipients": "a@example.com"}, "must be a list"),
        ({"recipients": [{"email": "bad"}]}, "exactly one @"),
    ]:
        r = requests.post(url, json=body, headers=admin_headers, timeout=30)
        assert r.status_code == 400 and fragment in r.json()["error"], (fragment, r.text)


def test_check_limits(live_app: LiveServer, admin_headers: dict[str, str]) -> None:
    url = f"{live_app.url}/api/v1/suppressions/check"
    r = requests.post(url, json={"emails": ["a@example.com"] * 100_001}, headers=admin_headers, timeout=60)
    assert r.status_code == 400 and "at most 100000" in r.json()["error"]
    r = requests.post(url, json={"emails": "a@example.com"}, headers=admin_headers, timeout=5)
    assert r.status_code == 400
    r = requests.post(url, json={"emails": ["a@example.com"] * 100_000}, headers=admin_headers, timeout=60)
    assert r.status_code == 200 and r.json() == {"suppressed": [], "invalid": []}


def test_oversized_body_is_413(make_config, make_hub, serve_app, admin_headers: dict[str, str]) -> None:
    from webhooks import create_app

    config = make_config({"http": {"max_content_length": 1024}})
    server = serve_app(create_app(hub=make_hub(config)))
    r = requests.post(
        f"{server.url}/api/v1/suppressions/check",
        json={"emails": ["a@example.com"] * 200},
        headers=admin_headers,
        timeout=5,
    )
    assert r.status_code == 413 and "error" in r.json()


def test_a_database_failure_while_recording_is_503(
    hub: Hub, live_app: LiveServer, admin_headers: dict[str, str]
) -> None:
    with hub.engine.begin() as conn:
        conn.execute(text("ALTER TABLE evidence RENAME TO evidence_away"))
    body = {"email": "m@example.com", "reason": "phone"}
    r = requests.post(f"{live_app.url}/api/v1/suppressions", json=body, headers=admin_headers, timeout=5)
    assert r.status_code == 503 and "retry" in r.json()["error"]
    with hub.engine.begin() as conn:
        conn.execute(text("ALTER TABLE evidence_away RENAME TO evidence"))
    r = requests.post(f"{live_app.url}/api/v1/suppressions", json=body, headers=admin_headers, timeout=5)
    assert r.status_code == 201 and r.json()["stored"] is True
