"""SendGrid push-back client against the fake v3 API (real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from adapters.config import Config
from adapters.errors import ProviderAPIError
from adapters.providers import sendgrid
from adapters.providers.client import Outcome, PushResult
from tests.support.fake_providers import SENDGRID_KEY, FakeProviders


@pytest.fixture
def client(push_config: Config, clock) -> Iterator[sendgrid.SendGridClient]:
    with requests.Session() as http:
        yield sendgrid.make_client(push_config, http, now=clock)


def test_global_opt_outs_are_one_call_to_the_global_list(
    client: sendgrid.SendGridClient, fake_providers: FakeProviders
) -> None:
    results = client.push("global", "unsubscribe", ["a@example.com", "B@example.com"])
    assert results == {"a@example.com": PushResult(Outcome.DONE, 201), "b@example.com": PushResult(Outcome.DONE, 201)}
    (call,) = fake_providers.sendgrid.calls
    assert (call.method, call.path, call.body) == (
        "POST",
        "/v3/asm/suppressions/global",
        {"recipient_emails": ["a@example.com", "B@example.com"]},
    )
    assert fake_providers.sendgrid.global_suppressions == {"a@example.com", "b@example.com"}
    client.push("global", "unsubscribe", ["a@example.com"])  # already suppressed: 201 again
    assert len(fake_providers.sendgrid.calls) == 2


def test_topic_goes_to_its_group(client: sendgrid.SendGridClient, fake_providers: FakeProviders) -> None:
    client.push("topic:newsletter", "unsubscribe", ["a@example.com"])
    assert fake_providers.sendgrid.calls[0].path == "/v3/asm/groups/1234/suppressions"
    assert fake_providers.sendgrid.group_suppressions[1234] == {"a@example.com"}
    assert fake_providers.sendgrid.global_suppressions == set()


def test_resubscribe_deletes_the_suppression(client: sendgrid.SendGridClient, fake_providers: FakeProviders) -> None:
    fake_providers.sendgrid.group_suppressions[1234].add("a@example.com")
    results = client.push("topic:newsletter", "resubscribe", ["a@example.com"])
    assert results["a@example.com"] == PushResult(Outcome.DONE, 204)
    assert (
        fake_providers.sendgrid.calls[0].method == "DELETE"
        and fake_providers.sendgrid.calls[0].path == "/v3/asm/groups/1234/suppressions/a@example.com"
    )
    assert fake_providers.sendgrid.group_suppressions[1234] == set()


def test_rate_limit_reset_is_the_wait_without_retry_after(
    client: sendgrid.SendGridClient, fake_providers: FakeProviders, clock
) -> None:
    fake_providers.sendgrid.fail_next(
        429,
        headers={"X-RateLimit-Reset": str(int(clock().timestamp()) + 42)},
        body={"errors": [{"field": None, "message": "too many requests"}]},
    )
    with pytest.raises(ProviderAPIError) as caught:
        client.push("global", "unsubscribe", ["a@example.com"])
    assert (caught.value.status, caught.value.retry_after, caught.value.retryable) == (429, 42.0, True)
    assert "too many requests" in str(caught.value)


def test_bad_key_is_a_401_without_the_key(make_push_config, fake_providers: FakeProviders, clock) -> None:
    config = make_push_config(fake_providers)
    with requests.Session() as http:
        client = sendgrid.make_client(config, http, now=clock)
        client.api._authorization = "Bearer wrong"  # as if the key had been revoked
        with pytest.raises(ProviderAPIError) as caught:
            client.check()
    assert caught.value.status == 401 and not caught.value.retryable
    assert "authorization required" in str(caught.value) and SENDGRID_KEY not in repr(client.api)


def test_check_needs_both_create_scopes_and_existing_groups(
    client: sendgrid.SendGridClient, fake_providers: FakeProviders
) -> None:
    assert client.check() == "scopes ok; groups: 1234 (Group 1234)"
    fake_providers.sendgrid.groups.clear()
    with pytest.raises(ProviderAPIError, match="group 1234 does not exist"):
        client.check()
    fake_providers.sendgrid.scopes = ["asm.suppressions.global.create"]
    with pytest.raises(ProviderAPIError, match=r"lacks the scopes asm\.groups\.suppressions\.create"):
        client.check()
