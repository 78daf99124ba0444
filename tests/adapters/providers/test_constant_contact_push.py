"""Constant Contact's push client against the fake v3 API (real HTTP), its OAuth tokens and
budget kept in the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import requests

from adapters.config import Config
from adapters.errors import ProviderAPIError
from adapters.hub import Hub
from adapters.providers import constant_contact
from adapters.providers.client import Outcome
from adapters.providers.oauth import ReauthorizationNeeded
from adapters.store.constant_contact import status
from tests.support import constant_contact as cc
from tests.support.clock import Clock
from tests.support.fake_providers import FakeConstantContact

LIST = "1f0a8f5c-0000-4000-8000-000000000001"


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeConstantContact]:
    with cc.started(clock) as fake:
        yield fake


@pytest.fixture
def cc_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], fake: FakeConstantContact) -> Hub:
    config = make_config(
        {
            "providers": {"constant_contact": cc.cc_table(fake)},
            "topics": [{"name": "newsletter", "constant_contact_list": LIST}],
        },
        env=cc.cc_env(fake),
    )
    return make_hub(config)


@pytest.fixture
def client(cc_hub: Hub, clock: Clock) -> Iterator[constant_contact.ConstantContactClient]:
    with requests.Session() as http:
        yield constant_contact.make_client(cc_hub.config, http, now=clock, state=cc.state(cc_hub))


def api_calls(fake: FakeConstantContact) -> list[tuple[str, str]]:
    return [(c.method, c.path) for c in fake.calls if c.path.startswith("/v3/")]


def test_a_global_opt_out_puts_the_whole_record_back(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact
) -> None:
    contact_id = fake.add_contact(
        "Ann@Example.com",
        first_name="Ann",
        last_name="Lee",
        job_title="Buyer",
        company_name="Acme",
        birthday_month=4,
        birthday_day=12,
        anniversary="2020-06-01",
        custom_fields=[{"custom_field_id": "cf1", "value": "gold"}],
        phone_numbers=[{"phone_number": "+1 555 0100", "kind": "work"}],
        list_memberships=[LIST],
    )
    updated_before = fake.contacts[contact_id]["updated_at"]
    results = client.push("global", "unsubscribe", ["ann@example.com"])
    assert results["ann@example.com"].outcome is Outcome.DONE
    assert api_calls(fake) == [("GET", "/v3/contacts"), ("PUT", f"/v3/contacts/{contact_id}")]
    put = fake.calls_to("PUT")[0].body
    assert put["update_source"] == "Contact" and put["email_address"]["permission_to_send"] == "unsubscribed"
    assert put["email_address"]["opt_out_reason"]
    contact = fake.contacts[contact_id]
    assert {f: contact[f] for f in ("first_name", "last_name", "job_title", "company_name")} == {
        "first_name": "Ann",
        "last_name": "Lee",
        "job_title": "Buyer",
        "company_name": "Acme",
    }
    assert (contact["birthday_month"], contact["birthday_day"], contact["anniversary"]) == (4, 12, "2020-06-01")
    assert contact["custom_fields"] == [{"custom_field_id": "cf1", "value": "gold"}]
    assert contact["phone_numbers"] == [{"phone_number": "+1 555 0100", "kind": "work"}]
    assert contact["email_address"]["opt_out_source"] == "Contact"
    assert contact["updated_at"] == updated_before  # as at Constant Contact: an opt-out leaves it
    # again: one read, no write (already unsubscribed), by the id learned
    assert client.push("global", "unsubscribe", ["ann@example.com"])["ann@example.com"].detail == "already unsubscribed"
    assert api_calls(fake)[2:] == [("GET", f"/v3/contacts/{contact_id}")]


def test_an_unknown_address_is_created_unsubscribed(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact
) -> None:
    result = client.push("global", "unsubscribe", ["new@example.com"])["new@example.com"]
    assert (result.outcome, result.status, result.detail) == (Outcome.DONE, 201, "created unsubscribed")
    contact = fake.find("new@example.com")
    assert contact is not None and contact["email_address"]["permission_to_send"] == "unsubscribed"
    assert contact["create_source"] == "Account"


def test_a_deleted_contact_is_revived_unsubscribed(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact
) -> None:
    contact_id = fake.add_contact("gone@example.com", first_name="Gone")
    fake.delete_in_ui("gone@example.com")
    assert client.push("global", "unsubscribe", ["gone@example.com"])["gone@example.com"].outcome is Outcome.DONE
    contact = fake.contacts[contact_id]
    assert contact["email_address"]["permission_to_send"] == "unsubscribed" and contact["first_name"] == "Gone"
    assert fake.calls_to("PUT")[0].body["update_source"] == "Account"


def test_a_topic_opt_out_removes_from_the_list_in_one_activity(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact
) -> None:
    ids = [fake.add_contact(f"p{i}@example.com", list_memberships=[LIST]) for i in range(3)]
    client.push("global", "unsubscribe", ["nobody@example.com"])  # unrelated; learns nothing of p*
    calls = len(api_calls(fake))
    results = client.push(
        "topic:newsletter", "unsubscribe", ["p0@example.com", "p1@example.com", "p2@example.com", "x@example.com"]
    )
    assert all(r.outcome is Outcome.DONE for r in results.values()), results
    assert results["x@example.com"].detail == "not at Constant Contact: on no list"
    assert all(fake.contacts[i]["list_memberships"] == [] for i in ids)
    assert all(fake.contacts[i]["email_address"]["permission_to_send"] == "explicit" for i in ids)  # not an opt-out
    assert api_calls(fake)[calls:] == [("GET", "/v3/contacts")] * 4 + [
        ("POST", "/v3/activities/remove_list_memberships")
    ]
    # the ids are known now: the next removal is one call for the batch
    for i in ids:
        fake.contacts[i]["list_memberships"] = [LIST]
    calls = len(api_calls(fake))
    client.push("topic:newsletter", "unsubscribe", ["p0@example.com", "p1@example.com", "p2@example.com"])
    assert api_calls(fake)[calls:] == [("POST", "/v3/activities/remove_list_memberships")]
    assert sorted(fake.calls_to("POST", "/v3/activities")[-1].body["source"]["contact_ids"]) == sorted(ids)


def test_a_self_opted_out_contact_is_only_asked_to_confirm_once(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact
) -> None:
    contact_id = fake.unsubscribe_in_ui("self@example.com")
    first = client.push("global", "resubscribe", ["self@example.com"])["self@example.com"]
    assert first.outcome is Outcome.DONE and first.detail.startswith("confirmation requested")
    assert fake.resubscribe_sent == {contact_id}
    assert fake.calls_to("PUT")[-1].body == {"list_ids": [LIST]}
    assert fake.contacts[contact_id]["email_address"]["permission_to_send"] == "unsubscribed"  # never faked
    second = client.push("global", "resubscribe", ["self@example.com"])["self@example.com"]
    assert (second.status, second.detail.startswith("not resubscribed")) == (409, True)


def test_an_opt_out_the_account_made_is_lifted_by_the_person(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact
) -> None:
    contact_id = fake.unsubscribe_in_ui("acct@example.com", source="Account")
    assert client.push("global", "resubscribe", ["acct@example.com"])["acct@example.com"].outcome is Outcome.DONE
    assert fake.contacts[contact_id]["email_address"]["permission_to_send"] == "explicit"


def test_quota_exceeded_waits_until_midnight_for_every_call(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact, cc_hub: Hub, clock: Clock
) -> None:
    client.push("global", "unsubscribe", ["warm@example.com"])  # tokens in place
    fake.fail_next(429, body={"error_key": "quota_exceeded", "error_message": "Limit Exceeded"})
    results = client.push("global", "unsubscribe", ["a@example.com", "b@example.com"])
    midnight = (clock() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    for result in results.values():
        assert result.outcome is Outcome.RETRY and result.status == 429
        assert result.retry_after == (midnight - clock()).total_seconds()
    calls = len(fake.calls)
    with pytest.raises(ProviderAPIError, match="quota_exceeded"):  # no call is made before midnight
        client.api.request("GET", "/v3/contacts", params={"limit": "1"})
    assert len(fake.calls) == calls
    with cc_hub.sessions() as session:
        seen = status(session, cc_hub.config.providers.constant_contact, clock())
    assert (seen.budget_remaining, seen.blocked_until) == (0, midnight)
    clock.now = midnight + timedelta(seconds=1)
    assert client.push("global", "unsubscribe", ["a@example.com"])["a@example.com"].outcome is Outcome.DONE


def test_the_daily_budget_is_kept_across_clients(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], fake: FakeConstantContact, clock: Clock
) -> None:
    config = make_config({"providers": {"constant_contact": cc.cc_table(fake, daily_requests=3)}}, env=cc.cc_env(fake))
    hub = make_hub(config)
    with requests.Session() as http:
        one = constant_contact.make_client(config, http, now=clock, state=cc.state(hub))
        two = constant_contact.make_client(config, http, now=clock, state=cc.state(hub))
        one.check()
        two.check()
        one.check()
        with pytest.raises(ProviderAPIError, match="budget of 3 calls is spent") as caught:
            two.check()
    assert caught.value.status == 429
    assert len(api_calls(fake)) == 3


def test_throttled_is_a_short_back_off(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact
) -> None:
    client.check()
    fake.fail_next(429, body={"error_key": "throttled", "error_message": "Too Many Requests"})
    result = client.push("global", "unsubscribe", ["a@example.com"])["a@example.com"]
    assert (result.outcome, result.retry_after) == (Outcome.RETRY, constant_contact.THROTTLE_WAIT)


def test_tokens_are_refreshed_before_they_expire_and_rotated_in_the_store(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact, cc_hub: Hub, clock: Clock
) -> None:
    client.check()
    assert fake.token_grants == ["refresh_token"]
    first = cc.state(cc_hub).load().tokens
    assert first is not None and first.refresh_token in fake.refresh_tokens
    assert fake.initial_refresh_token not in fake.refresh_tokens  # rotated: the configured one is dead now
    clock.advance(86_400 - 11 * 60)  # 11 minutes before expiry: still used
    client.check()
    assert fake.token_grants == ["refresh_token"]
    clock.advance(2 * 60)  # within the margin: refreshed first
    client.check()
    assert fake.token_grants == ["refresh_token", "refresh_token"]
    second = cc.state(cc_hub).load().tokens
    assert second is not None and second.refresh_token != first.refresh_token
    assert "refresh_token" not in repr(second) and second.refresh_token not in repr(second)


def test_a_refused_access_token_is_refreshed_once(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact
) -> None:
    client.check()
    fake.access_tokens.clear()  # revoked at Constant Contact
    assert client.check().startswith("token ok")
    assert fake.token_grants == ["refresh_token", "refresh_token"]


def test_invalid_grant_is_a_dead_state_until_re_authorized(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact, cc_hub: Hub, clock: Clock
) -> None:
    client.check()
    fake.refresh_tokens.clear()  # e.g. another installation used the token
    clock.advance(86_400)
    result = client.push("global", "unsubscribe", ["a@example.com"])["a@example.com"]
    assert result.outcome is Outcome.RETRY and "re-authorize Constant Contact" in result.detail
    assert result.retry_after and result.retry_after >= 600  # rows wait for the admin
    with pytest.raises(ReauthorizationNeeded, match="invalid_grant"):
        client.check()
    assert fake.invalid_grants == 1  # dead: the refused token is not tried again
    with cc_hub.sessions() as session:
        assert "invalid_grant" in (status(session, cc_hub.config.providers.constant_contact, clock()).dead or "")
    # an admin re-authorizes: the code's tokens end the dead state
    redirect = "https://hub.example.com/oauth/constant_contact/callback"
    with requests.Session() as http:
        oauth = constant_contact.make_oauth(cc_hub.config, http, now=clock, state=cc.state(cc_hub))
        oauth.exchange_code(fake.issue_code(redirect), redirect_uri=redirect)
    assert client.check().startswith("token ok")


def test_errors_never_show_a_token(
    client: constant_contact.ConstantContactClient, fake: FakeConstantContact, cc_hub: Hub
) -> None:
    client.check()
    tokens = cc.state(cc_hub).load().tokens
    assert tokens is not None
    fake.fail_next(400, body=[{"error_key": "x", "error_message": f"echo {tokens.access_token}"}])
    with pytest.raises(ProviderAPIError) as caught:
        client.check()
    text = f"{caught.value} {caught.value.body}"
    assert tokens.access_token not in text and "echo ***" in text


def test_constant_contact_has_no_webhook() -> None:
    assert constant_contact.WEBHOOK is None
