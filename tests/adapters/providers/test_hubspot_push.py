"""HubSpot push-back client against the fake communication-preferences API (real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from adapters.config import Config
from adapters.errors import ProviderAPIError
from adapters.providers import hubspot
from adapters.providers.client import Outcome, PushResult
from tests.support.fake_providers import FakeProviders


@pytest.fixture
def client(push_config: Config, clock) -> Iterator[hubspot.HubSpotClient]:
    with requests.Session() as http:
        yield hubspot.make_client(push_config, http, now=clock)


def test_global_is_a_batch_unsubscribe_all_and_repeats_are_done(
    client: hubspot.HubSpotClient, fake_providers: FakeProviders
) -> None:
    assert client.push("global", "unsubscribe", ["a@example.com", "b@example.com"]) == {
        "a@example.com": PushResult(Outcome.DONE, 200),
        "b@example.com": PushResult(Outcome.DONE, 200),
    }
    (call,) = fake_providers.hubspot.calls
    assert (call.path, call.query, call.body) == (
        "/communication-preferences/v4/statuses/batch/unsubscribe-all",
        {"channel": ["EMAIL"]},
        {"inputs": ["a@example.com", "b@example.com"]},
    )
    assert (
        client.push("global", "unsubscribe", ["a@example.com"])["a@example.com"].outcome is Outcome.DONE
    )  # NO_STATUS_CHANGE
    assert fake_providers.hubspot.unsubscribed_all == {"a@example.com", "b@example.com"}


def test_whatever_the_batch_answer_names_is_read_without_raising(
    client: hubspot.HubSpotClient, fake_providers: FakeProviders
) -> None:
    odd = [None, 7, "", "\udcff", "no address", ["a@example.com"]]
    answer = [{"subscriberIdString": value, "statuses": []} for value in odd]
    answer.append({"subscriberIdString": "A@Example.COM", "statuses": []})
    fake_providers.hubspot.fail_next(200, body={"status": "COMPLETE", "results": answer})
    results = client.push("global", "unsubscribe", ["a@example.com", "b@example.com"])
    assert {k: r.outcome for k, r in results.items()} == {"a@example.com": Outcome.DONE, "b@example.com": Outcome.RETRY}


def test_without_the_batch_scope_unsubscribe_all_is_one_call_per_address(
    push_config: Config, fake_providers: FakeProviders, clock
) -> None:
    with requests.Session() as http:
        client = hubspot.make_client(push_config, http, now=clock)
        client.batch = False  # providers.hubspot.batch_unsubscribe_all = false
        assert {
            r.outcome for r in client.push("global", "unsubscribe", ["a@example.com", "b@example.com"]).values()
        } == {Outcome.DONE}
    assert sorted((c.path, c.query) for c in fake_providers.hubspot.calls) == [
        (f"/communication-preferences/v4/statuses/{e}/unsubscribe-all", {"channel": ["EMAIL"]})
        for e in ("a@example.com", "b@example.com")
    ]
    assert fake_providers.hubspot.unsubscribed_all == {"a@example.com", "b@example.com"}


def test_topic_is_one_v3_call_per_address_and_already_unsubscribed_is_done(
    client: hubspot.HubSpotClient, fake_providers: FakeProviders
) -> None:
    fake_providers.hubspot.unsubscribed["5678"].add("b@example.com")
    results = client.push("topic:newsletter", "unsubscribe", ["a@example.com", "b@example.com"])
    assert results["a@example.com"] == PushResult(Outcome.DONE, 200)
    assert (
        results["b@example.com"].outcome is Outcome.DONE and results["b@example.com"].detail == "already unsubscribed"
    )
    (first,) = [c for c in fake_providers.hubspot.calls if c.status == 200]  # the calls run concurrently
    assert first.path == "/communication-preferences/v3/unsubscribe"
    assert first.body == {
        "emailAddress": "a@example.com",
        "subscriptionId": "5678",
        "legalBasis": "LEGITIMATE_INTEREST_CLIENT",
        "legalBasisExplanation": "The recipient asked to unsubscribe",
    }


def test_topic_resubscribe_and_global_resubscribe(client: hubspot.HubSpotClient, fake_providers: FakeProviders) -> None:
    fake_providers.hubspot.unsubscribed["5678"].add("a@example.com")
    assert client.push("topic:newsletter", "resubscribe", ["a@example.com"])["a@example.com"] == PushResult(
        Outcome.DONE, 200
    )
    assert fake_providers.hubspot.unsubscribed["5678"] == set()
    result = client.push("global", "resubscribe", ["a@example.com"])["a@example.com"]
    assert result.outcome is Outcome.DEAD and "no API to undo" in result.detail


def test_a_429_stops_a_per_address_round_and_pauses_every_call_to_hubspot(
    client: hubspot.HubSpotClient, fake_providers: FakeProviders, clock
) -> None:
    fake_providers.hubspot.fail_next(
        429,
        body={
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
    )
    emails = [f"r{i}@example.com" for i in range(30)]
    results = client.push("topic:newsletter", "unsubscribe", emails)
    sent = list(fake_providers.hubspot.calls)
    # calls already in flight when the 429 came back were answered; the rest were never sent
    assert [c.status for c in sent].count(429) == 1 and len(sent) < len(emails)
    sent_to = {c.body["emailAddress"] for c in sent if c.status == 200}
    unsent = [e for e in emails if e not in sent_to]
    assert all(results[e].outcome is Outcome.RETRY and results[e].retry_after == 10.0 for e in unsent)
    # the pause holds every call to the provider, a batch call too, until the window has passed
    clock.advance(9)
    with pytest.raises(ProviderAPIError) as caught:
        client.push("global", "unsubscribe", ["a@example.com"])
    assert caught.value.retryable and caught.value.retry_after == 1.0 and "not sent" in str(caught.value)
    assert len(fake_providers.hubspot.calls) == len(sent)
    clock.advance(1)
    results = client.push("topic:newsletter", "unsubscribe", unsent)
    assert {r.outcome for r in results.values()} == {Outcome.DONE}


def test_daily_limit_waits_until_the_next_utc_day(client: hubspot.HubSpotClient, fake_providers: FakeProviders) -> None:
    fake_providers.hubspot.fail_next(429, body={"status": "error", "message": "daily limit", "policyName": "DAILY"})
    with pytest.raises(ProviderAPIError) as caught:
        client.push("global", "unsubscribe", ["a@example.com"])
    assert caught.value.retry_after == 12 * 3600  # the test clock stands at 12:00 UTC


def test_check_lists_subscriptions_and_names_missing_ones(
    client: hubspot.HubSpotClient, fake_providers: FakeProviders
) -> None:
    assert client.check() == (
        "token ok; subscriptions: 5678 (Subscription 5678); unsubscribe-all: batch "
        "(needs communication_preferences.statuses.batch.write); write scopes are proven only by a push"
    )
    fake_providers.hubspot.subscriptions.clear()
    with pytest.raises(ProviderAPIError, match="not found in this portal: 5678"):
        client.check()
