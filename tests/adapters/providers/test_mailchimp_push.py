"""Mailchimp push-back client against the fake Marketing API (real HTTP)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from adapters.config import Config
from adapters.errors import ConfigError, ProviderAPIError
from adapters.providers import mailchimp
from adapters.providers.client import Outcome
from tests.support.fake_providers import MAILCHIMP_KEY, FakeProviders


@pytest.fixture
def client(push_config: Config, clock) -> mailchimp.MailchimpClient:
    with requests.Session() as http:
        yield mailchimp.make_client(push_config, http, now=clock)


def test_global_opt_out_goes_to_every_list_in_one_batch_call_each(
    client: mailchimp.MailchimpClient, fake_providers: FakeProviders
) -> None:
    fake = fake_providers.mailchimp
    fake.members["list1"]["b@example.com"] = "subscribed"
    results = client.push("global", "unsubscribe", ["A@Example.com", "b@example.com"])
    assert {k: r.outcome for k, r in results.items()} == {"a@example.com": Outcome.DONE, "b@example.com": Outcome.DONE}
    calls = fake.calls_to("POST")
    assert [c.path for c in calls] == ["/3.0/lists/list1", "/3.0/lists/list2"]
    assert calls[0].body == {
        "members": [
            {"email_address": "A@Example.com", "status": "unsubscribed"},
            {"email_address": "b@example.com", "status": "unsubscribed"},
        ],
        "update_existing": True,
    }
    assert fake.members == {
        "list1": {"a@example.com": "unsubscribed", "b@example.com": "unsubscribed"},
        "list2": {"a@example.com": "unsubscribed", "b@example.com": "unsubscribed"},
    }


def test_topic_goes_to_its_list_only(client: mailchimp.MailchimpClient, fake_providers: FakeProviders) -> None:
    client.push("topic:newsletter", "unsubscribe", ["a@example.com"])
    assert [c.path for c in fake_providers.mailchimp.calls] == ["/3.0/lists/list1"]


def test_per_address_errors_inside_the_200(client: mailchimp.MailchimpClient, fake_providers: FakeProviders) -> None:
    fake_providers.mailchimp.forgotten.add("gone@example.com")
    fake_providers.mailchimp.rejected_addresses.add("fake@example.com")
    results = client.push("topic:newsletter", "unsubscribe", ["ok@example.com", "gone@example.com", "fake@example.com"])
    assert results["ok@example.com"].outcome is Outcome.DONE
    assert results["gone@example.com"].outcome is Outcome.DONE  # deleted for good: nothing to suppress
    assert results["fake@example.com"].outcome is Outcome.DEAD
    assert "Invalid Resource" in results["fake@example.com"].detail


def test_whatever_the_answer_names_is_read_without_raising(
    client: mailchimp.MailchimpClient, fake_providers: FakeProviders
) -> None:
    odd = [None, 42, "", "not an address", "\udcff@example.com", {"nested": "a@example.com"}]
    errors = [{"email_address": value, "error": "odd", "error_code": "ERROR_GENERIC"} for value in odd]
    errors.append({"email_address": "FAKE@Example.COM", "error": "Invalid Resource", "error_code": "ERROR_GENERIC"})
    fake_providers.mailchimp.fail_next(200, body={"new_members": [], "updated_members": [], "errors": errors})
    results = client.push("topic:newsletter", "unsubscribe", ["ok@example.com", "fake@example.com"])
    assert {k: r.outcome for k, r in results.items()} == {
        "ok@example.com": Outcome.DONE,
        "fake@example.com": Outcome.DEAD,
    }


def test_unknown_list_is_dead_and_a_5xx_on_one_list_retries_the_row(
    make_push_config: Callable[..., Config], fake_providers: FakeProviders, clock
) -> None:
    del fake_providers.mailchimp.members["list2"]
    with requests.Session() as http:
        client = mailchimp.make_client(make_push_config(fake_providers), http, now=clock)
        result = client.push("global", "unsubscribe", ["a@example.com"])["a@example.com"]
        assert (result.outcome, result.status) == (Outcome.DEAD, 404)
        fake_providers.mailchimp.members["list2"] = {}
        fake_providers.mailchimp.fail_next(503)
        result = client.push("global", "unsubscribe", ["a@example.com"])["a@example.com"]
        assert (result.outcome, result.status) == (Outcome.RETRY, 503)


def test_resubscribe_asks_existing_members_to_confirm(
    client: mailchimp.MailchimpClient, fake_providers: FakeProviders
) -> None:
    fake_providers.mailchimp.members["list1"]["a@example.com"] = "unsubscribed"
    results = client.push("topic:newsletter", "resubscribe", ["A@example.com", "never@example.com"])
    assert results["a@example.com"] == mailchimp.PushResult(Outcome.DONE, 200)
    assert results["never@example.com"].outcome is Outcome.DONE and results["never@example.com"].status == 404
    assert fake_providers.mailchimp.members["list1"] == {"a@example.com": "pending"}
    assert {c.path for c in fake_providers.mailchimp.calls_to("PATCH")} == {
        f"/3.0/lists/list1/members/{mailchimp.subscriber_hash(e)}" for e in ("a@example.com", "never@example.com")
    }  # sent concurrently: in any order


def test_key_never_appears_in_errors(client: mailchimp.MailchimpClient, fake_providers: FakeProviders) -> None:
    fake_providers.mailchimp.fail_next(
        400, body={"title": "Invalid", "status": 400, "detail": f"the key {MAILCHIMP_KEY} is not allowed"}
    )
    with pytest.raises(ProviderAPIError) as caught:
        client.api.request(
            "POST",
            "/3.0/lists/list1",
            json_body={
                "members": [{"email_address": "a@example.com", "status": "unsubscribed"}],
                "update_existing": True,
            },
        )
    exc = caught.value
    assert exc.status == 400 and "***" in str(exc) and "***" in exc.body
    assert MAILCHIMP_KEY not in f"{exc} {exc.body} {exc!r} {client.api!r}"


def test_data_centre_comes_from_the_key(make_push_config: Callable[..., Config], clock) -> None:
    with requests.Session() as http:
        client = mailchimp.make_client(make_push_config(None, providers=("mailchimp",)), http, now=clock)
    assert client.api.base_url == "https://us6.api.mailchimp.com"
    assert mailchimp.data_centre("abc-us21") == "us21"
    with pytest.raises(ConfigError, match="api_key_env"):
        mailchimp.data_centre("no-suffix-")


def test_check_pings_and_reads_each_list(client: mailchimp.MailchimpClient, fake_providers: FakeProviders) -> None:
    assert client.check() == "ping ok; lists: list1 (List list1), list2 (List list2)"
    assert [c.query for c in fake_providers.mailchimp.calls_to("GET", "/3.0/lists")] == [{"fields": ["id,name"]}] * 2
    del fake_providers.mailchimp.members["list2"]
    with pytest.raises(ProviderAPIError, match="404"):
        client.check()
