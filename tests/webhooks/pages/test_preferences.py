"""The preference centre over real HTTP: topics, reasons, resubscribe with proof of consent, CSRF."""

from __future__ import annotations

from typing import Any

import requests

from adapters.hub import Hub
from tests.support.clock import Clock
from tests.support.pages import events, forged, form_field, issue_token, stored_counts, without_cookies
from webhooks.security import CSRF_FIELD

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def open_centre(url: str, **headers: str) -> tuple[str, str]:
    """The page's HTML and its CSRF token."""
    r = requests.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert without_cookies(r)
    return r.text, form_field(r.text, CSRF_FIELD)


def submit(url: str, csrf: str | None, **fields: Any) -> requests.Response:
    data = {k: v for k, v in fields.items()}
    if csrf is not None:
        data[CSRF_FIELD] = csrf
    return requests.post(url, data=data, timeout=10, allow_redirects=False)


def test_page_lists_topics_with_their_state(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "ann@example.com", topic="newsletter")
    html, _ = open_centre(f"{app_url}/preferences/{token}")
    assert "Monthly newsletter" in html and "Special offers" in html
    assert html.count(" checked>") == 2
    assert "a•••@example.com" in html


def test_unsubscribing_a_topic_stores_the_reason(topic_hub: Hub, app_url: str) -> None:
    url = f"{app_url}/preferences/{issue_token(topic_hub, 'ben@example.com', campaign='c-42')}"
    _, csrf = open_centre(url)
    r = submit(url, csrf, action="save", topic="newsletter", reason="too_many", reason_text="  three a   week ")
    assert r.status_code == 200 and "Your choices are saved." in r.text
    [event] = events(topic_hub)
    assert (event.kind, event.scope, event.source, event.verification, event.reason, event.campaign) == (
        "unsubscribe",
        "topic:offers",
        "preferences",
        "token",
        "too_many: three a week",
        "c-42",
    )
    assert r.text.count(" checked>") == 1  # the page shows the new state
    r = submit(url, form_field(r.text, CSRF_FIELD), action="save", topic="newsletter")
    assert "Nothing has changed." in r.text and len(events(topic_hub)) == 1


def test_unsubscribe_all_then_resubscribe_keeps_proof_of_consent(topic_hub: Hub, app_url: str, clock: Clock) -> None:
    url = f"{app_url}/preferences/{issue_token(topic_hub, 'cleo@example.com')}"
    _, csrf = open_centre(url)
    r = submit(url, csrf, action="unsubscribe_all", reason="never_signed_up")
    assert "You are unsubscribed from all our emails." in r.text
    clock.advance(60)
    html, csrf = open_centre(url, **{"Accept-Language": "zh"})
    clock.advance(5)
    r = requests.post(
        url, data={"action": "resubscribe", CSRF_FIELD: csrf}, headers={"Accept-Language": "zh"}, timeout=10
    )
    assert r.status_code == 200
    unsub, resub = events(topic_hub)
    assert (unsub.kind, unsub.scope, unsub.reason) == ("unsubscribe", "global", "never_signed_up")
    assert (resub.kind, resub.scope, resub.source, resub.verification) == (
        "resubscribe",
        "global",
        "preferences",
        "token",
    )
    consent = resub.meta["consent"]
    assert consent["wording"] == "是的，我希望此地址重新接收所有这些邮件。" and consent["wording"] in html
    assert consent["lang"] == "zh" and consent["page"] == "preferences"
    assert consent["shown_at"] == "2026-11-24T12:01:00+00:00" and consent["submitted_at"] == "2026-11-24T12:01:05+00:00"
    with topic_hub.sessions() as session:
        from adapters.store.queries import address_state

        assert address_state(session, "cleo@example.com")["suppressed"] is False


def test_ticking_a_topic_again_resubscribes_it(topic_hub: Hub, app_url: str) -> None:
    url = f"{app_url}/preferences/{issue_token(topic_hub, 'dan@example.com')}"
    _, csrf = open_centre(url)
    shown = submit(url, csrf, action="save", topic="offers")  # the page it answers is the new form
    r = submit(url, form_field(shown.text, CSRF_FIELD), action="save", topic=["offers", "newsletter"])
    assert "Welcome back" in r.text
    assert [(e.kind, e.scope) for e in events(topic_hub)] == [
        ("unsubscribe", "topic:newsletter"),
        ("resubscribe", "topic:newsletter"),
    ]
    assert (
        events(topic_hub)[1].meta["consent"]["wording"]
        == "Ticked topics are the emails I agree to receive at this address."
    )


def test_csrf_missing_wrong_or_expired_is_400_and_stores_nothing(topic_hub: Hub, app_url: str, clock: Clock) -> None:
    token = issue_token(topic_hub, "eve@example.com")
    other = issue_token(topic_hub, "fay@example.com")
    url = f"{app_url}/preferences/{token}"
    _, csrf = open_centre(url)
    _, other_csrf = open_centre(f"{app_url}/preferences/{other}")
    for given in (None, "", "123.abc", "\u00b2.abc", other_csrf, csrf.replace(".", ".0")):
        r = submit(url, given, action="unsubscribe_all")
        assert r.status_code == 400, given
        assert "form token" in r.text
    clock.advance(24 * 3600 + 1)
    r = submit(url, csrf, action="unsubscribe_all")
    assert r.status_code == 400 and "expired" in r.text
    assert stored_counts(topic_hub) == (0, 0)


def test_bad_form_values_are_400(topic_hub: Hub, app_url: str) -> None:
    url = f"{app_url}/preferences/{issue_token(topic_hub, 'gus@example.com')}"
    _, csrf = open_centre(url)
    for fields in (
        {"action": "delete_everything"},
        {"action": "save", "topic": "nope"},
        {"action": "unsubscribe_all", "reason": "spite"},
        {"action": "unsubscribe_all", "reason_text": "x" * 501},
    ):
        assert submit(url, csrf, **fields).status_code == 400, fields
    assert stored_counts(topic_hub) == (0, 0)


def test_forged_token_is_404(topic_hub: Hub, app_url: str) -> None:
    token = issue_token(topic_hub, "hal@example.com")
    _, csrf = open_centre(f"{app_url}/preferences/{token}")
    assert requests.get(f"{app_url}/preferences/{forged(token)}", timeout=10).status_code == 404
    assert submit(f"{app_url}/preferences/{forged(token)}", csrf, action="unsubscribe_all").status_code == 404
    r = submit(f"{app_url}/preferences/{token.upper()}", csrf, action="unsubscribe_all")
    assert r.status_code == 200  # a case-altered token is the same token
    assert stored_counts(topic_hub) == (1, 1)


def test_a_stale_form_never_resubscribes_a_topic_opted_out_since(topic_hub: Hub, app_url: str, clock: Clock) -> None:
    """Issue 14, case 4: the page is open; the person uses the one-click link for "newsletter"
    in another mail; then saves the still-open form (to give a reason)."""
    url = f"{app_url}/preferences/{issue_token(topic_hub, 'ivy@example.com')}"
    _, csrf = open_centre(url)
    clock.advance(30)
    one_click = f"{app_url}/u/{issue_token(topic_hub, 'ivy@example.com', topic='newsletter')}"
    assert requests.post(one_click, data="List-Unsubscribe=One-Click", headers=FORM, timeout=10).status_code == 200
    clock.advance(30)
    r = submit(url, csrf, action="save", topic=["newsletter", "offers"], reason="too_many")
    assert r.status_code == 200
    assert "Your choices changed since this page was shown" in r.text
    assert 'value="newsletter" id="topic-newsletter">' in r.text  # shown again, unticked
    assert [(e.kind, e.scope, e.source) for e in events(topic_hub)] == [("unsubscribe", "topic:newsletter", "oneclick")]
    # the page it answered is current: ticking the topic there is the person's own choice
    r = submit(url, form_field(r.text, CSRF_FIELD), action="save", topic=["newsletter", "offers"])
    assert "Welcome back" in r.text and [e.kind for e in events(topic_hub)] == ["unsubscribe", "resubscribe"]


def test_a_stale_form_still_applies_the_opt_outs_the_person_made(topic_hub: Hub, app_url: str) -> None:
    url = f"{app_url}/preferences/{issue_token(topic_hub, 'jo@example.com')}"
    _, csrf = open_centre(url)
    one_click = f"{app_url}/u/{issue_token(topic_hub, 'jo@example.com', topic='newsletter')}"
    assert requests.post(one_click, data="List-Unsubscribe=One-Click", headers=FORM, timeout=10).status_code == 200
    r = submit(url, csrf, action="save", topic=["newsletter"])  # unticks offers; newsletter it left as shown
    assert "Your choices changed since this page was shown" in r.text
    assert [(e.kind, e.scope) for e in events(topic_hub)] == [
        ("unsubscribe", "topic:newsletter"),
        ("unsubscribe", "topic:offers"),
    ]


def test_the_shown_state_cannot_be_forged(topic_hub: Hub, app_url: str) -> None:
    url = f"{app_url}/preferences/{issue_token(topic_hub, 'kit@example.com')}"
    _, csrf = open_centre(url)
    shown, _, token = csrf.rpartition("~")
    forged_state = "topic:newsletter|1|1"
    assert shown != forged_state
    r = submit(url, f"{forged_state}~{token}", action="save", topic=["newsletter", "offers"])
    assert r.status_code == 400 and stored_counts(topic_hub) == (0, 0)
