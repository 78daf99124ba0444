"""The worker and Constant Contact, through the real store, worker and HTTP fakes: an opt-out
made in Constant Contact's UI reaches the hub by polling and goes on to the other providers;
opt-outs pushed there wait until midnight UTC when the daily quota is spent."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from adapters.config import Config, load_config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.constant_contact import status
from adapters.store.models import Event, OutboxRow
from adapters.worker.constant_contact import clients_for
from adapters.worker.outbox import Worker
from tests.support import constant_contact as cc
from tests.support.clock import Clock
from tests.support.fake_providers import FakeConstantContact, FakeProviders


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeConstantContact]:
    with cc.started(clock, per_second=None) as fake:
        yield fake


@pytest.fixture
def make_cc_hub(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    fake: FakeConstantContact,
    provider_env: dict[str, str],
    make_config: Callable[..., Config],
) -> Callable[..., Hub]:
    def build(**table: Any) -> Hub:
        base = make_push_config(fake_providers, providers=("sendgrid",))
        data: dict[str, Any] = {
            "providers": {
                "sendgrid": {"enabled": True, "base_url": fake_providers.url("sendgrid"), "webhook_public_key_env": ""},
                "constant_contact": cc.cc_table(fake, requests_per_second=50.0, **table),
            },
            "worker": {"collect_window_seconds": 0.0, "poll_interval_seconds": 0.05, "backoff_max_seconds": 60.0},
        }
        config = make_config(data, env={**provider_env, **cc.cc_env(fake)})
        assert base.providers.sendgrid.base_url == config.providers.sendgrid.base_url
        return make_hub(config)

    return build


def events_of(hub: Hub, source: Source) -> list[Event]:
    with hub.sessions() as session:
        return list(session.scalars(select(Event).where(Event.source == source.value).order_by(Event.id)))


def test_an_opt_out_made_in_constant_contacts_ui_reaches_sendgrid(
    make_cc_hub: Callable[..., Hub], fake: FakeConstantContact, fake_providers: FakeProviders, clock: Clock
) -> None:
    hub = make_cc_hub(poll_interval_minutes=15)
    with requests.Session() as http:
        worker = Worker(hub, clients_for(hub, http), http=http, rng=lambda: 1.0)
        worker.drain()  # the first poll: the backfill (nothing yet)
        clock.advance(60)
        fake.unsubscribe_in_ui("person@example.com", reason="Too many mails")
        worker.drain()  # not due yet: the interval has not passed
        assert events_of(hub, Source.CONSTANT_CONTACT) == []
        clock.advance(15 * 60)
        tallies = worker.drain()
        (event,) = events_of(hub, Source.CONSTANT_CONTACT)
        assert (event.email, event.kind, event.verification, event.actor) == (
            "person@example.com",
            "unsubscribe",
            "pull",
            "person",
        )
        assert event.occurred_at == clock() - timedelta(minutes=15)  # the provider's time
        assert fake_providers.sendgrid.global_suppressions == {"person@example.com"}
        assert tallies["sendgrid"].pushed == 1 and "constant_contact" not in {
            slug for slug, t in tallies.items() if t.rows
        }  # never echoed back to where it came from
        # the next polls overlap the last window: the same opt-out is not stored twice
        clock.advance(15 * 60)
        worker.drain()
        assert len(events_of(hub, Source.CONSTANT_CONTACT)) == 1
        windows = [c.query.get("optout_after") for c in fake.calls_to("GET", "/v3/contacts")]
        assert windows[0] is None and all(w is not None for w in windows[1:]) and len(windows) == 3
    with hub.sessions() as session:
        seen = status(session, hub.config.providers.constant_contact, clock())
    assert seen.pull.finished_at == clock() and seen.last_pull_error is None


def test_opt_outs_wait_until_midnight_when_the_quota_is_spent(
    make_cc_hub: Callable[..., Hub], fake: FakeConstantContact, fake_providers: FakeProviders, clock: Clock
) -> None:
    hub = make_cc_hub(poll_interval_minutes=0)
    with requests.Session() as http:
        worker = Worker(hub, clients_for(hub, http), http=http, rng=lambda: 1.0)
        hub.record([OptOutEvent(f"q{i}@example.com", Kind.UNSUBSCRIBE, Source.API) for i in range(3)])
        fake.daily_quota = 2  # two calls left today at Constant Contact
        tallies = worker.drain()
        assert tallies["constant_contact"].pushed == 1 and tallies["constant_contact"].retried == 2
        midnight = (clock() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        with hub.sessions() as session:
            waiting = session.scalars(
                select(OutboxRow).where(OutboxRow.provider == "constant_contact", OutboxRow.state == "pending")
            ).all()
            seen = status(session, hub.config.providers.constant_contact, clock())
        assert len(waiting) == 2 and {r.due_at for r in waiting} == {midnight}
        assert all("quota" in (r.last_error or "") for r in waiting)
        assert (seen.budget_remaining, seen.blocked_until) == (0, midnight)
        calls = len(fake.calls)
        clock.now = midnight - timedelta(minutes=1)
        assert all(t.rows == 0 for t in worker.drain().values())  # nothing tried before midnight
        assert len(fake.calls) == calls
        clock.now = midnight
        fake.daily_quota = 10_000  # a new day's quota
        tallies = worker.drain()
        assert tallies["constant_contact"].pushed == 2
    for i in range(3):
        contact = fake.find(f"q{i}@example.com")
        assert contact is not None and contact["email_address"]["permission_to_send"] == "unsubscribed"
    assert fake_providers.sendgrid.global_suppressions == {f"q{i}@example.com" for i in range(3)}


def test_providers_check_says_to_re_authorize(tmp_path: Path, database_url: str) -> None:
    with cc.started(lambda: datetime.now(UTC), per_second=None) as fake:
        env = {**os.environ, "OPTOUT_HUB_SECRET": "s" * 32, **cc.cc_env(fake)}
        path = cc.write_config(tmp_path / "cc.toml", database_url, fake)
        Hub.open(load_config(path, env), upgrade=True).close()  # `db upgrade`
        command = [sys.executable, "-m", "adapters", "providers", "check", "--config", str(path)]
        ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert (ok.returncode, ok.stdout) == (0, "constant_contact: ok (token ok; contacts readable)\n"), ok.stderr
        fake.refresh_tokens.clear()  # the grant was revoked at Constant Contact
        fake.access_tokens.clear()
        dead = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert (dead.returncode, dead.stdout) == (
            1,
            "constant_contact: error: the refresh token was refused (invalid_grant): "
            "re-authorize Constant Contact on /admin\n",
        )
        assert fake.initial_refresh_token not in dead.stdout + dead.stderr + ok.stdout + ok.stderr
