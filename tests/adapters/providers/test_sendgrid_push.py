"""SendGrid push-back client against the fake v3 API (real HTTP), and its ``groups`` mode
through the real worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
from sqlalchemy import func, select

from adapters.config import Config
from adapters.errors import ConfigError, ProviderAPIError
from adapters.events import Kind, Source, Verification
from adapters.hub import Hub
from adapters.providers import make_clients, sendgrid
from adapters.providers.client import Outcome, PushResult
from adapters.store.models import OutboxRow
from adapters.worker.outbox import Worker
from tests.support.fake_providers import SENDGRID_KEY, FakeProviders, FakeSendGrid
from tests.support.store import ev


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


@pytest.fixture
def groups_fake() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid(groups=(1234, 77, 88))
    yield fake
    fake.close()
    assert fake.unexpected == []


def _groups_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], fake: FakeSendGrid) -> Hub:
    sendgrid_table = {
        "enabled": True,
        "base_url": fake.url,
        "webhook_public_key_env": "",
        "global_opt_out": "groups",
        "marketing_groups": [77, 88, 1234],
    }
    config = make_config(
        {
            "providers": {"sendgrid": sendgrid_table},
            "topics": [{"name": "newsletter", "sendgrid_group": 1234}],
            "worker": {"collect_window_seconds": 0.0},
        },
        env={"SENDGRID_API_KEY": SENDGRID_KEY},
    )
    return make_hub(config)


def _drain(hub: Hub) -> None:
    with requests.Session() as http:
        Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http).drain()


def test_groups_mode_puts_a_global_opt_out_in_every_marketing_group_through_the_worker(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], groups_fake: FakeSendGrid, clock
) -> None:
    hub = _groups_hub(make_config, make_hub, groups_fake)
    hub.record([ev("ann@example.com", source=Source.SMTP), ev("bo@example.com", source=Source.ONECLICK)])
    _drain(hub)
    posts = groups_fake.calls_to("POST")
    assert [c.path for c in posts] == [f"/v3/asm/groups/{g}/suppressions" for g in (1234, 77, 88)]  # topics' first
    assert all(c.body == {"recipient_emails": ["ann@example.com", "bo@example.com"]} for c in posts)
    assert groups_fake.global_suppressions == set()  # receipts and password resets still reach them
    assert all(groups_fake.group_suppressions[g] == {"ann@example.com", "bo@example.com"} for g in (1234, 77, 88))
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.state != "done")) == 0

    # bo also leaves the newsletter, then lifts the global opt-out: the topic's group keeps bo
    clock.advance(60)
    hub.record([ev("bo@example.com", source=Source.ONECLICK, scope="topic:newsletter")])
    clock.advance(60)
    hub.record([ev("bo@example.com", Kind.RESUBSCRIBE, Source.PREFERENCES, verification=Verification.TOKEN)])
    _drain(hub)
    assert groups_fake.group_suppressions[77] == groups_fake.group_suppressions[88] == {"ann@example.com"}
    assert groups_fake.group_suppressions[1234] == {"ann@example.com", "bo@example.com"}
    assert {c.path for c in groups_fake.calls_to("DELETE")} == {  # never the held topic's group
        f"/v3/asm/groups/{g}/suppressions/bo@example.com" for g in (77, 88)
    }
    assert groups_fake.global_suppressions == set()


def test_groups_mode_checks_its_groups_and_needs_some(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], groups_fake: FakeSendGrid, clock
) -> None:
    hub = _groups_hub(make_config, make_hub, groups_fake)
    groups_fake.groups.discard(88)  # deleted at SendGrid: its opt-outs would land on the global list
    with requests.Session() as http, pytest.raises(ProviderAPIError, match="unsubscribe group 88 does not exist"):
        sendgrid.make_client(hub.config, http, now=clock).check()
    with pytest.raises(ConfigError, match="needs unsubscribe groups"):
        make_config(
            {"providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": "", "global_opt_out": "groups"}}},
            env={"SENDGRID_API_KEY": SENDGRID_KEY},
        )
    with pytest.raises(ConfigError, match=r"providers\.sendgrid\.global_opt_out"):
        make_config({"providers": {"sendgrid": {"global_opt_out": "everything"}}})
