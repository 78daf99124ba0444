"""The admin/sender JSON API over real HTTP (contract §4)."""

from __future__ import annotations

import requests

from tests.conftest import LiveServer


def test_missing_or_wrong_token_is_401(live_app: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = requests.get(f"{live_app.url}/api/v1/suppressions/a@example.com", headers=headers, timeout=5)
        assert r.status_code == 401
        assert r.json() == {"error": "missing or invalid bearer token"}


def test_add_then_status_then_check(live_app: LiveServer, admin_headers: dict[str, str]) -> None:
    r = requests.post(f"{live_app.url}/api/v1/suppressions", json={"email": "Bob@Example.COM", "reason": "asked by phone"}, headers=admin_headers, timeout=5)
    assert r.status_code == 201, r.text
    assert r.json()["changed"] is True
    r = requests.get(f"{live_app.url}/api/v1/suppressions/bob@example.com", headers=admin_headers, timeout=5)
    body = r.json()
    assert body["email"] == "Bob@example.com"
    assert body["suppressed"] is True and body["scopes"] == ["global"]
    assert [e["source"] for e in body["events"]] == ["api"]
    assert body["events"][0]["reason"] == "asked by phone"
    r = requests.post(f"{live_app.url}/api/v1/suppressions/check", json={"emails": ["BOB@example.com", "carol@example.com", "not-an-address"]}, headers=admin_headers, timeout=5)
    assert r.json() == {"suppressed": ["BOB@example.com"], "invalid": ["not-an-address"]}


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
