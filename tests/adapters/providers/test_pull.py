"""Pulling back (``adapters/providers/pull.py`` and each provider's ``make_puller``): the pure
parsers on the providers' documented response bytes, the shared HTTP side (retries, 429s)
against the fakes, and the fakes refusing what the real APIs refuse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from adapters.config import Config
from adapters.errors import ProviderAPIError
from adapters.events import GLOBAL_SCOPE, Kind, Verification
from adapters.providers import hubspot, mailchimp, sendgrid
from adapters.providers.pull import PullAPI, decode_checkpoint, pull_event_id
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_mailchimp_members_page() -> None:
    body = json.loads(
        b'{"members": [{"email_address": "A@Example.com", "status": "unsubscribed", "last_changed":'
        b' "2026-11-20T10:00:00+00:00", "unsubscribe_reason": "N/A (Unsubscribed by an admin)"},'
        b' {"email_address": "b@example.com", "status": "cleaned", "last_changed": "2026-11-21T10:00:00+00:00"},'
        b' {"email_address": "c@example.com", "status": "subscribed", "last_changed": "2026-11-22T10:00:00+00:00"},'
        b' {"email_address": "not an address", "status": "unsubscribed"},'
        b' {"email_address": "d@example.com", "status": "archived"}], "total_items": 5}'
    )
    events, mailable, total = mailchimp.parse_members(body, list_id="l1", scope="topic:news", received_at=NOW)
    assert total == 5 and mailable == ["c@example.com"]
    assert [(e.email, e.kind, e.scope, e.verification) for e in events] == [
        ("A@example.com", Kind.UNSUBSCRIBE, "topic:news", Verification.PULL),
        ("b@example.com", Kind.BOUNCE, "topic:news", Verification.PULL),
    ]
    assert events[0].occurred_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert events[0].reason == "N/A (Unsubscribed by an admin)"
    again, _, _ = mailchimp.parse_members(body, list_id="l1", scope="topic:news", received_at=NOW)
    assert [e.provider_event_id for e in again] == [e.provider_event_id for e in events]  # stable ids


def test_sendgrid_suppression_pages_and_groups() -> None:
    body = json.loads(b'[{"created": 1443651141, "email": "user1@example.com", "ip": "10.63.202.100"}]')
    (event,) = sendgrid.parse_suppressions(body, kind_name="spam_reports", received_at=NOW)
    assert (event.kind, event.scope, event.occurred_at) == (
        Kind.COMPLAINT,
        GLOBAL_SCOPE,
        datetime.fromtimestamp(1443651141, tz=UTC),
    )
    page = sendgrid.parse_group(
        json.loads(b'["a@example.com", "B@example.com"]'), group=7, scope="topic:news", received_at=NOW
    )
    assert page.snapshot is not None and list(page.snapshot.emails) == ["a@example.com", "B@example.com"]
    assert {e.scope for e in page.events} == {"topic:news"}
    with pytest.raises(Exception, match="expected a JSON array"):
        sendgrid.parse_suppressions(json.loads(b'{"errors": []}'), kind_name="bounces", received_at=NOW)


def test_hubspot_search_and_status_reads() -> None:
    search = json.loads(
        b'{"total": 2, "results": [{"id": "1", "properties": {"email": "a@example.com",'
        b' "lastmodifieddate": "2026-11-20T10:00:00.000Z"}}, {"id": "2", "properties": {"email": null,'
        b' "lastmodifieddate": "2026-11-20T10:00:01.000Z"}}], "paging": {"next": {"after": "2", "link": "?after=2"}}}'
    )
    last = int(datetime(2026, 11, 20, 10, 0, 1, tzinfo=UTC).timestamp() * 1000)
    assert hubspot.parse_search(search) == (["a@example.com"], 2, last)
    statuses = json.loads(
        b'{"status": "COMPLETE", "results": [{"subscriberIdString": "a@example.com", "statuses": ['
        b'{"subscriptionId": 5678, "status": "UNSUBSCRIBED", "timestamp": "2026-11-20T10:00:00Z"},'
        b'{"subscriptionId": 9999, "status": "UNSUBSCRIBED", "timestamp": "2026-11-20T10:00:00Z"}]},'
        b'{"subscriberIdString": "b@example.com", "statuses": [{"subscriptionId": 5678, "status": "SUBSCRIBED"}]}]}'
    )
    wide = json.loads(
        b'{"status": "COMPLETE", "results": [{"subscriberIdString": "a@example.com", "wideStatuses": [{"channel":'
        b' "EMAIL", "status": "UNSUBSCRIBED", "timestamp": "2026-11-19T10:00:00Z", "wideStatusType": "PORTAL_WIDE"}]}]}'
    )
    events, mailable = hubspot.parse_statuses(statuses, wide, scopes={"5678": "topic:news"}, received_at=NOW)
    assert [(e.email, e.scope) for e in events] == [("a@example.com", GLOBAL_SCOPE), ("a@example.com", "topic:news")]
    assert mailable == {"topic:news": ["b@example.com"]}  # subscription 9999 maps no topic: ignored


def test_helpers() -> None:
    assert pull_event_id("x", "a", 1) == pull_event_id("x", "a", 1) != pull_event_id("x", "a", 2)
    assert len(pull_event_id("mc-pull", "l" * 300)) <= 200
    assert decode_checkpoint('{"step": 2}') == {"step": 2} and decode_checkpoint("garbage") == {}


def test_a_429_is_waited_out_and_a_401_ends_the_pull(
    push_config: Config, http: requests.Session, fake_providers: FakeProviders
) -> None:
    fake = fake_providers.sendgrid
    waits: list[float] = []
    clock = Clock()  # the throttle's clock: waiting out a 429 moves it on
    api = PullAPI(sendgrid._api(push_config, http, clock), sleep=lambda s: (waits.append(s), clock.advance(s)))
    fake.fail_next(429, retry_after="3")
    fake.fail_next(503)
    assert api.request("GET", "/v3/suppression/unsubscribes", params={"limit": "500"}) == []
    assert (waits, api.take_calls()) == ([3.0, 1.0], 3)
    fake.fail_next(401, body={"errors": [{"field": None, "message": "authorization required"}]})
    with pytest.raises(ProviderAPIError, match="401"):
        api.request("GET", "/v3/suppression/unsubscribes")
    assert api.take_calls() == 1


def test_sendgrid_rate_limit_headers_pace_the_pull(
    push_config: Config, http: requests.Session, fake_providers: FakeProviders
) -> None:
    fake = fake_providers.sendgrid
    fake.rate_limit = 2
    fake.ui_add("unsubscribes", [f"r{i}@example.com" for i in range(1200)], created=1_700_000_000)
    waits: list[float] = []
    puller = sendgrid.make_puller(push_config, http, now=lambda: datetime.now(UTC))
    puller.api.sleep = lambda s: (waits.append(s), __import__("time").sleep(s))  # type: ignore[func-returns-value]
    pages = list(puller.pull(since=None, checkpoint=None))
    assert sum(len(p.events) for p in pages if p.snapshot is None) == 1200
    assert waits and all(0 <= w <= 1.0 for w in waits)  # until X-RateLimit-Reset, the next second


@pytest.mark.parametrize(
    ("slug", "method", "path", "body", "params"),
    [
        ("mailchimp", "GET", "/3.0/lists/list1/members", None, {"count": "1001"}),
        ("mailchimp", "GET", "/3.0/lists/list1/members", None, {"since_last_changed": "2026-11-20T10:00:00"}),
        ("mailchimp", "GET", "/3.0/lists/list1/members", None, {"unsubscribed_since": "2026-11-20"}),
        ("sendgrid", "GET", "/v3/suppression/unsubscribes", None, {"limit": "501"}),
        ("sendgrid", "GET", "/v3/suppression/bounces", None, {"start_time": "yesterday"}),
        ("hubspot", "POST", "/crm/v3/objects/contacts/search", {"limit": 200, "after": "9900"}, None),
        ("hubspot", "POST", "/crm/v3/objects/contacts/search", {"limit": 201}, None),
        ("hubspot", "POST", "/crm/v3/objects/contacts/search", {"filterGroups": [{"filters": []}] * 6}, None),
        ("hubspot", "POST", "/communication-preferences/v4/statuses/batch/read", {"inputs": ["a@example.com"]}, None),
    ],
)
def test_the_fakes_refuse_what_the_real_apis_refuse(
    slug: str,
    method: str,
    path: str,
    body: object,
    params: dict[str, str] | None,
    push_config: Config,
    http: requests.Session,
    fake_providers: FakeProviders,
) -> None:
    api = {"mailchimp": mailchimp._api, "sendgrid": sendgrid._api, "hubspot": hubspot._api}[slug](
        push_config, http, lambda: NOW
    )
    with pytest.raises(ProviderAPIError) as failed:
        api.request(method, path, json_body=body, params=params)
    assert failed.value.status == 400
    fake_providers[slug].unexpected.clear()  # refused on purpose


def test_hubspot_pages_past_the_search_cap_with_a_new_query(http: requests.Session) -> None:
    from adapters.config import parse_config
    from tests.support.fake_providers import FakeHubSpot, provider_env_vars

    fake = FakeHubSpot()
    try:
        start = 1_700_000_000.0
        for i in range(10_300):  # one contact a second: 10,300 distinct change times
            fake.ui_status([f"c{i}@example.com"], at=start + i)
        config = parse_config(
            {"providers": {"hubspot": {"enabled": True, "base_url": fake.url, "client_secret_env": ""}}},
            provider_env_vars(),
        )
        puller = hubspot.make_puller(config, http, now=lambda: datetime.now(UTC))
        pages = list(puller.pull(since=None, checkpoint=None))
        found = {e.email for p in pages for e in p.events}
        assert len(found) == 10_300
        searches = fake.calls_to("POST", "/crm/v3/objects/contacts/search")
        afters = [c.body["after"] for c in searches if c.status == 200]  # a 429 (retried) has no body kept
        assert "9800" in afters and max(int(a) for a in afters) <= 9800  # never paged past the cap
        assert afters.count("0") == 2  # the second query started again from the last time seen
        assert fake.unexpected == []
    finally:
        fake.close()


def test_fake_mailchimp_refuses_more_than_ten_connections_at_once() -> None:
    import base64
    import concurrent.futures

    from tests.support.fake_providers import MAILCHIMP_KEY, FakeMailchimp

    fake = FakeMailchimp()
    fake.latency = 0.5
    auth = {"Authorization": "Basic " + base64.b64encode(f"hub:{MAILCHIMP_KEY}".encode()).decode()}
    try:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            statuses = list(
                pool.map(lambda _: requests.get(f"{fake.url}/3.0/ping", headers=auth).status_code, range(12))
            )
    finally:
        fake.close()
    assert statuses.count(429) >= 1 and statuses.count(200) + statuses.count(429) == 12, statuses
