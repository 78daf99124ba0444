"""The shared push plumbing: the per-provider throttle and concurrent per-address pushes,
against the fake provider servers (real HTTP)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from adapters.config import Config
from adapters.errors import ProviderAPIError
from adapters.providers import hubspot
from adapters.providers.client import Outcome, PushResult, Throttle, push_each
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders


def test_the_rolling_window_spaces_calls_beyond_its_limit(clock: Clock) -> None:
    throttle = Throttle(4, now=clock, per_window=3, window_seconds=0.4)
    started = []
    lock = threading.Lock()

    def call() -> None:
        with throttle.slot(), lock:
            started.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    started.sort()
    assert len(started) == 7
    # never more than 3 starts in any 0.4 s: the 4th waits for the 1st to leave the window
    assert all(started[i + 3] - started[i] >= 0.4 - 0.01 for i in range(len(started) - 3))


def test_a_pause_runs_on_the_outbox_clock(clock: Clock) -> None:
    throttle = Throttle(2, now=clock)
    assert throttle.paused_for() == 0.0
    throttle.pause(30)
    throttle.pause(5)  # a shorter wait never shortens a longer one
    assert throttle.paused_for() == 30.0
    clock.advance(30)
    assert throttle.paused_for() == 0.0


def test_push_each_stops_starting_calls_after_a_retryable_failure() -> None:
    calls = []

    def call(address: str) -> PushResult:
        calls.append(address)
        if address == "b@example.com":
            raise ProviderAPIError("x", "down", status=503)
        return PushResult(Outcome.DONE, 200)

    results = push_each(["a@example.com", "b@example.com", "c@example.com"], call)
    assert calls == ["a@example.com", "b@example.com"]
    assert results["a@example.com"].outcome is Outcome.DONE
    assert results["b@example.com"] == results["c@example.com"]
    assert results["c@example.com"].outcome is Outcome.RETRY


@pytest.fixture
def concurrent_client(make_push_config, fake_providers: FakeProviders, clock: Clock) -> Iterator[hubspot.HubSpotClient]:
    config: Config = make_push_config(fake_providers, providers=("hubspot",))
    config = replace(
        config,
        providers=replace(config.providers, hubspot=replace(config.providers.hubspot, max_concurrent_requests=4)),
    )
    with requests.Session() as http:
        yield hubspot.make_client(config, http, now=clock)


def test_per_address_calls_run_concurrently_within_the_providers_bound(
    concurrent_client: hubspot.HubSpotClient, fake_providers: FakeProviders
) -> None:
    fake_providers.hubspot.latency = 0.05
    emails = [f"r{i}@example.com" for i in range(24)]
    results = concurrent_client.push("topic:newsletter", "unsubscribe", emails)
    assert {r.outcome for r in results.values()} == {Outcome.DONE}
    assert fake_providers.hubspot.unsubscribed["5678"] == set(emails)
    assert 1 < fake_providers.hubspot.max_in_flight <= 4
