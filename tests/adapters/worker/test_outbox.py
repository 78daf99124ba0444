"""The outbox: admin helpers, and the worker claiming, batching, pushing and settling rows
against the fake provider servers (real HTTP)."""

from __future__ import annotations

import base64
import bisect
import collections
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select, update

from adapters.config import Config, load_config, parse_config
from adapters.events import Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.models import OutboxRow, Suppression
from adapters.store.outbox import dead_rows, outbox_summary, retry_row
from adapters.worker.outbox import Worker, worker_id
from tests.support.clock import Clock
from tests.support.environment import TEST_SECRET
from tests.support.fake_providers import SENDGRID_KEY, FakeProviders
from tests.support.pg_cluster import private_cluster

SENDGRID_ONLY = {"providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": ""}}}


def optout(
    email: str, source: Source = Source.API, scope: str = "global", kind: Kind = Kind.UNSUBSCRIBE
) -> OptOutEvent:
    verification = Verification.TOKEN if kind is Kind.RESUBSCRIBE else Verification.NONE  # the person's own
    return OptOutEvent(email=email, kind=kind, source=source, scope=scope, verification=verification)


def rows(hub: Hub) -> list[OutboxRow]:
    with hub.sessions() as session:
        return list(session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


# --- admin helpers ----------------------------------------------------------------------------


def test_summary_dead_rows_and_retry(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock
) -> None:
    hub = make_hub(make_config(SENDGRID_ONLY, env={"SENDGRID_API_KEY": "SG.test"}))
    hub.record([optout(f"p{i}@example.com") for i in range(3)])
    with hub.sessions.begin() as session:
        assert outbox_summary(session) == {"sendgrid": {"pending": 3, "done": 0, "dead": 0}}
        ids = sorted(session.scalars(select(OutboxRow.id)))
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.id == ids[0])
            .values(state="dead", attempts=4, last_status=400, last_error="bad")
        )
        session.execute(update(OutboxRow).where(OutboxRow.id == ids[1]).values(state="done"))
    with hub.sessions.begin() as session:
        assert outbox_summary(session) == {"sendgrid": {"pending": 1, "done": 1, "dead": 1}}
        (dead,) = dead_rows(session)
        assert (dead.id, dead.last_status, dead.last_error) == (ids[0], 400, "bad")
        assert dead_rows(session, provider="mailchimp") == []
        later = clock.advance(60)
        assert retry_row(session, ids[0], now=later, admin="Dana Ops")
        assert not retry_row(session, ids[1], now=later, admin="Dana Ops")  # done: nothing to retry
        assert not retry_row(session, 999_999, now=later, admin="Dana Ops")
    with hub.sessions.begin() as session:
        row = session.get(OutboxRow, ids[0])
        assert (row.state, row.attempts, row.due_at, row.lease_owner) == ("pending", 0, later, None)
        assert outbox_summary(session)["sendgrid"] == {"pending": 2, "done": 1, "dead": 0}


def test_topic_rows_only_for_mapped_providers(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]
) -> None:
    config = make_config(
        {**SENDGRID_ONLY, "topics": [{"name": "news", "sendgrid_group": 7}, {"name": "other"}]},
        env={"SENDGRID_API_KEY": "SG.test"},
    )
    hub = make_hub(config)
    hub.record(
        [
            optout("a@example.com", scope=topic_scope("news")),
            optout("b@example.com", scope=topic_scope("other")),
            optout("c@example.com", source=Source.SENDGRID),
        ]
    )
    with hub.sessions.begin() as session:
        assert outbox_summary(session) == {"sendgrid": {"pending": 1, "done": 0, "dead": 0}}


# --- the worker ------------------------------------------------------------------------------


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def make_worker(http: requests.Session) -> Callable[..., Worker]:
    def build(hub: Hub, **kwargs: object) -> Worker:
        return Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http, rng=lambda: 1.0, **kwargs)

    return build


@pytest.fixture
def push_hub(make_hub: Callable[[Config], Hub], push_config: Config) -> Hub:
    return make_hub(push_config)


def test_every_opt_out_reaches_every_other_provider_and_never_its_source(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders
) -> None:
    push_hub.record(
        [
            optout("api@example.com"),
            optout("sg@example.com", source=Source.SENDGRID),
            optout("hs@example.com", source=Source.HUBSPOT),
            optout("mc@example.com", source=Source.MAILCHIMP),
        ]
    )
    totals = make_worker(push_hub).drain()
    assert {slug: (t.pushed, t.retried, t.dead) for slug, t in totals.items()} == {
        "mailchimp": (3, 0, 0),
        "sendgrid": (3, 0, 0),
        "hubspot": (3, 0, 0),
    }
    assert (
        set(fake_providers.mailchimp.members["list1"])
        == set(fake_providers.mailchimp.members["list2"])
        == {"api@example.com", "sg@example.com", "hs@example.com"}
    )
    assert fake_providers.sendgrid.global_suppressions == {"api@example.com", "mc@example.com", "hs@example.com"}
    assert fake_providers.hubspot.unsubscribed_all == {"api@example.com", "mc@example.com", "sg@example.com"}
    assert {r.state for r in rows(push_hub)} == {"done"}
    metrics = push_hub.metrics.render().decode()
    assert 'optout_push_total{provider="sendgrid",result="done"} 3.0' in metrics
    assert "optout_push_latency_seconds_count 9.0" in metrics
    assert 'optout_outbox_pending{provider="hubspot"} 0.0' in metrics


def test_topic_opt_out_goes_to_the_mapped_list_group_and_subscription_only(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders
) -> None:
    push_hub.record([optout("t@example.com", scope=topic_scope("newsletter"))])
    make_worker(push_hub).drain()
    assert fake_providers.mailchimp.members == {"list1": {"t@example.com": "unsubscribed"}, "list2": {}}
    assert (fake_providers.sendgrid.group_suppressions, fake_providers.sendgrid.global_suppressions) == (
        {1234: {"t@example.com"}},
        set(),
    )
    assert (fake_providers.hubspot.unsubscribed, fake_providers.hubspot.unsubscribed_all) == (
        {"5678": {"t@example.com"}},
        set(),
    )


def test_a_burst_becomes_few_batch_calls(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders
) -> None:
    push_hub.record([optout(f"b{i}@example.com") for i in range(1200)])
    totals = make_worker(push_hub).drain()
    assert {slug: t.pushed for slug, t in totals.items()} == {"mailchimp": 1200, "sendgrid": 1200, "hubspot": 1200}
    sizes = {
        slug: [
            len(c.body.get("members") or c.body.get("recipient_emails") or c.body.get("inputs"))
            for c in fake_providers[slug].calls
        ]
        for slug in ("mailchimp", "sendgrid", "hubspot")
    }
    assert sorted(sizes["mailchimp"]) == [200, 200, 500, 500, 500, 500]  # 500 + 500, then 200, per list
    assert sizes["sendgrid"] == [1000, 200]
    assert sizes["hubspot"] == [100] * 12


def test_server_errors_retry_with_exponential_back_off(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders, clock: Clock
) -> None:
    push_hub.record([optout("r@example.com")])
    worker = make_worker(push_hub)
    fake_providers.sendgrid.fail_next(500, times=2)
    start = clock()
    assert worker.drain()["sendgrid"].retried == 1
    (row,) = [r for r in rows(push_hub) if r.provider == "sendgrid"]
    assert (row.state, row.attempts, row.last_status, (row.due_at - start).total_seconds()) == ("pending", 1, 500, 2.0)
    assert "fake 500" in row.last_error
    clock.advance(1.9)
    assert worker.drain()["sendgrid"].retried == 0 and len(fake_providers.sendgrid.calls) == 1  # not due yet
    clock.advance(0.1)
    assert worker.drain()["sendgrid"].retried == 1
    (row,) = [r for r in rows(push_hub) if r.provider == "sendgrid"]
    assert (row.attempts, (row.due_at - clock()).total_seconds()) == (2, 4.0)  # doubled
    clock.advance(4)
    assert worker.drain()["sendgrid"].pushed == 1
    assert fake_providers.sendgrid.global_suppressions == {"r@example.com"}
    assert 'optout_push_total{provider="sendgrid",result="retry"} 2.0' in push_hub.metrics.render().decode()


def test_retry_after_is_honoured(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders, clock: Clock
) -> None:
    push_hub.record([optout("slow@example.com")])
    worker = make_worker(push_hub)
    fake_providers.hubspot.fail_next(
        429,
        retry_after="120",
        body={
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
    )
    worker.drain()
    clock.advance(119.9)
    worker.drain()
    assert len(fake_providers.hubspot.calls) == 1  # no retry before Retry-After
    clock.advance(0.1)
    assert worker.drain()["hubspot"].pushed == 1
    assert len(fake_providers.hubspot.calls) == 2


def test_time_outs_retry(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    make_worker: Callable[..., Worker],
    fake_providers: FakeProviders,
) -> None:
    config = make_push_config(fake_providers, providers=("sendgrid",))
    config = replace(
        config, providers=replace(config.providers, sendgrid=replace(config.providers.sendgrid, timeout_seconds=0.2))
    )
    hub = make_hub(config)
    hub.record([optout("t@example.com")])
    fake_providers.sendgrid.fail_next(201, timeout=0.6)
    assert make_worker(hub).drain()["sendgrid"].retried == 1
    (row,) = rows(hub)
    assert (row.state, row.last_status) == ("pending", None)
    assert "timed out" in row.last_error


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"errors": [{"field": "recipient_emails", "message": "invalid email"}]}, "400 invalid email"),
        (401, {"errors": [{"field": None, "message": "authorization required"}]}, "401 authorization required"),
        (404, {"errors": [{"field": None, "message": "not found"}]}, "404 not found"),
    ],
)
def test_other_4xx_are_dead_with_the_answer_kept(
    push_hub: Hub,
    make_worker: Callable[..., Worker],
    fake_providers: FakeProviders,
    clock: Clock,
    status: int,
    body: dict,
    expected: str,
) -> None:
    push_hub.record([optout("d@example.com")])
    fake_providers.sendgrid.fail_next(status, body=body)
    worker = make_worker(push_hub)
    tally = worker.drain()["sendgrid"]
    assert (tally.dead, tally.failures[0][1]) == (1, "d@example.com")
    (row,) = [r for r in rows(push_hub) if r.provider == "sendgrid"]
    assert (row.state, row.last_status) == ("dead", status)
    assert expected in row.last_error and body["errors"][0]["message"] in row.last_error
    clock.advance(3600)
    worker.drain()
    assert len(fake_providers.sendgrid.calls) == 1  # never retried on its own
    with push_hub.sessions.begin() as session:
        assert retry_row(session, row.id, now=clock(), admin="Dana Ops")
    assert worker.drain()["sendgrid"].pushed == 1


def test_transient_failures_are_retried_past_max_attempts_with_capped_back_off(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    make_worker: Callable[..., Worker],
    fake_providers: FakeProviders,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker_cfg = {"max_attempts": 2, "backoff_base_seconds": 2.0, "backoff_max_seconds": 8.0}
    hub = make_hub(make_push_config(fake_providers, providers=("sendgrid",), worker=worker_cfg))
    hub.record([optout("m@example.com")])
    fake_providers.sendgrid.fail_next(503, times=6)
    worker = make_worker(hub)
    waits = []
    for _ in range(6):
        assert worker.drain()["sendgrid"].retried == 1
        (row,) = rows(hub)
        waits.append((row.due_at - clock()).total_seconds())
        clock.advance(waits[-1])
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]  # doubling, capped; never given up
    assert row.state == "pending" and row.attempts == 6
    overdue = [r.getMessage() for r in caplog.records if "overdue" in r.getMessage()]
    assert len(overdue) == 1 and f"row {row.id}: still failing after 2 attempts (overdue)" in overdue[0]
    assert worker.drain()["sendgrid"].pushed == 1
    assert fake_providers.sendgrid.global_suppressions == {"m@example.com"}


def test_the_oldest_unsettled_opt_out_is_a_metric_per_provider(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders, clock: Clock
) -> None:
    def gauge() -> dict[str, float]:
        lines = push_hub.metrics.render().decode().splitlines()
        prefix = "optout_oldest_unsettled_seconds{provider="
        return {
            line[len(prefix) + 1 :].split('"')[0]: float(line.split()[-1]) for line in lines if line.startswith(prefix)
        }

    push_hub.record([optout("u@example.com")])
    fake_providers.sendgrid.fail_next(503)
    make_worker(push_hub).drain()
    clock.advance(3600)
    assert gauge() == {"mailchimp": 0.0, "sendgrid": 3600.0, "hubspot": 0.0}
    make_worker(push_hub).drain()
    assert gauge() == {"mailchimp": 0.0, "sendgrid": 0.0, "hubspot": 0.0}


def test_drain_stops_when_a_round_only_put_rows_back(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    make_worker: Callable[..., Worker],
    fake_providers: FakeProviders,
) -> None:
    hub = make_hub(make_push_config(fake_providers, providers=("sendgrid",), worker={"backoff_base_seconds": 0.0}))
    hub.record([optout("f@example.com")])
    fake_providers.sendgrid.fail_next(500, times=5)
    assert make_worker(hub).drain()["sendgrid"].retried == 1  # due again at once, but not hammered
    assert len(fake_providers.sendgrid.calls) == 1


def test_a_dead_workers_lease_runs_out_and_the_row_is_pushed(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders, clock: Clock
) -> None:
    push_hub.record([optout("l@example.com")])
    crashed = make_worker(push_hub, owner="crashed")
    assert len(crashed.claim("sendgrid", 10)) == 1  # claimed, then the process died
    other = make_worker(push_hub, owner="other")
    assert other.claim("sendgrid", 10) == []
    clock.advance(push_hub.config.worker.lease_seconds)
    assert other.drain()["sendgrid"].pushed == 1
    (row,) = [r for r in rows(push_hub) if r.provider == "sendgrid"]
    assert (row.state, row.attempts, row.lease_owner) == ("done", 2, "other")


def test_a_worker_does_not_push_rows_whose_lease_it_lost(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders, clock: Clock
) -> None:
    push_hub.record([optout("lost@example.com")])
    slow, other = make_worker(push_hub, owner="slow"), make_worker(push_hub, owner="other")
    claimed = slow.claim("sendgrid", 10)
    clock.advance(push_hub.config.worker.lease_seconds)  # the lease ran out before the push
    assert len(other.claim("sendgrid", 10)) == 1
    assert slow.push(slow.clients["sendgrid"], claimed).rows == 0
    assert fake_providers.sendgrid.calls == []
    (row,) = [r for r in rows(push_hub) if r.provider == "sendgrid"]
    assert (row.state, row.lease_owner) == ("pending", "other")  # left to the worker that holds it


def test_the_latest_change_of_an_address_wins(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders, clock: Clock
) -> None:
    scope = topic_scope("newsletter")
    push_hub.record([optout("x@example.com", scope=scope)])
    clock.advance(1)
    push_hub.record([OptOutEvent("x@example.com", Kind.RESUBSCRIBE, Source.PREFERENCES, scope, Verification.TOKEN)])
    make_worker(push_hub).drain()
    assert [c.method for c in fake_providers.sendgrid.calls] == ["DELETE"]
    states = collections.Counter((r.action, r.state) for r in rows(push_hub) if r.provider == "sendgrid")
    assert states == {("unsubscribe", "done"): 1, ("resubscribe", "done"): 1}  # one push settled both


def suppressed(hub: Hub, email: str, scope: str = "global") -> bool:
    with hub.sessions() as session:
        return session.get(Suppression, (email, scope)).suppressed


def test_a_retried_resubscribe_never_undoes_a_newer_opt_out(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    make_worker: Callable[..., Worker],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    keep = {"compact_after_seconds": 86400.0}  # settled rows stay in the outbox to be looked at
    hub = make_hub(make_push_config(fake_providers, providers=("sendgrid",), worker=keep))
    worker = make_worker(hub)
    sendgrid = fake_providers.sendgrid
    hub.record([optout("c@example.com")])
    worker.drain()
    clock.advance(1)
    hub.record([optout("c@example.com", kind=Kind.RESUBSCRIBE, source=Source.PREFERENCES)])
    sendgrid.fail_next(500)
    assert worker.drain()["sendgrid"].retried == 1  # the DELETE failed: queued for a retry
    clock.advance(1)
    hub.record([optout("c@example.com")])
    worker.drain()  # the new opt-out is pushed at once
    clock.advance(3600)
    worker.drain()  # the retry is due
    assert suppressed(hub, "c@example.com")
    assert sendgrid.global_suppressions == {"c@example.com"}
    assert [c.method for c in sendgrid.calls] == ["POST", "DELETE", "POST"]  # the old resubscribe is not sent again
    assert {r.state for r in rows(hub)} == {"done"}


class GatedSession(requests.Session):
    """A session whose requests wait, before they leave, until ``gate`` is set: a call in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.waiting.set()
        self.gate.wait(timeout=10)
        return super().send(request, **kwargs)


def test_a_push_overtaken_by_a_newer_state_is_pushed_again(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    make_worker: Callable[..., Worker],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    hub = make_hub(make_push_config(fake_providers, providers=("sendgrid",)))
    sendgrid = fake_providers.sendgrid
    hub.record([optout("v@example.com")])
    with GatedSession() as slow:
        first = Worker(hub, make_clients(hub.config, slow, now=hub.clock), http=slow, owner="first")
        pushing = threading.Thread(target=first.drain)
        pushing.start()
        assert slow.waiting.wait(timeout=10)  # the opt-out's POST is on its way
        clock.advance(1)
        hub.record([optout("v@example.com", kind=Kind.RESUBSCRIBE, source=Source.PREFERENCES)])
        make_worker(hub, owner="second").drain()  # the resubscribe overtakes it
        slow.gate.set()
        pushing.join(timeout=10)
    assert [c.method for c in sendgrid.calls] == ["DELETE", "POST", "DELETE"]  # the current state again, last
    assert sendgrid.global_suppressions == set() and not suppressed(hub, "v@example.com")
    assert {r.state for r in rows(hub)} == {"done"}


def test_the_running_worker_pushes_a_lone_opt_out_within_a_second(
    push_config: Config, fake_providers: FakeProviders, http: requests.Session
) -> None:
    config = replace(
        push_config, worker=replace(push_config.worker, collect_window_seconds=0.2, poll_interval_seconds=0.5)
    )
    hub = Hub.open(config, upgrade=True)  # the real clock
    worker = Worker(hub, make_clients(config, http, now=hub.clock), http=http)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.3)
        started = time.time()
        hub.record([optout("lone@example.com")])
        while not all(f.calls for f in fake_providers.all()) and time.time() - started < 5:
            time.sleep(0.01)
        assert max(f.calls[0].at for f in fake_providers.all()) - started < 1.0
    finally:
        stop.set()
        thread.join(timeout=10)
        hub.close()
    assert not thread.is_alive()


# --- worker processes: killed mid-push, and two at once on PostgreSQL ------------------------


PROVIDER_TABLES = {
    "mailchimp": 'lists = ["list1", "list2"]\nwebhook_secret_env = ""',
    "sendgrid": 'webhook_public_key_env = ""',
    "hubspot": 'subscription_ids = ["5678"]\nclient_secret_env = ""\nrequests_per_10_seconds = 250',  # its top tier
}


def test_rows_claimed_by_a_round_the_database_failed_are_pushed_again_as_soon_as_it_is_back(
    fake_providers: FakeProviders, http: requests.Session
) -> None:
    """The worker's lease on them (120 s here) is ended once the database answers again."""
    with private_cluster() as cluster:
        sendgrid = {"enabled": True, "base_url": fake_providers.url("sendgrid"), "webhook_public_key_env": ""}
        config = parse_config(
            {
                "database": {"url": cluster.url},
                "providers": {"sendgrid": sendgrid},
                "worker": {"poll_interval_seconds": 0.1, "collect_window_seconds": 0.0, "lease_seconds": 120},
                "security": {"token_secret_env": "OPTOUT_HUB_SECRET"},
            },
            {"OPTOUT_HUB_SECRET": TEST_SECRET, "SENDGRID_API_KEY": SENDGRID_KEY},
        )
        hub = Hub.open(config, upgrade=True)
        worker = Worker(hub, make_clients(config, http, now=hub.clock), http=http)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,))
        try:
            with fake_providers.sendgrid.hold():
                hub.record([optout("held@example.com")])
                thread.start()
                assert fake_providers.sendgrid.waiting.acquire(timeout=10)  # claimed, the push under way
                cluster.stop()
            time.sleep(1)  # the answer came back: settling it failed, and so did the round
            cluster.start()
            wait_until(lambda: [r.state for r in rows(hub)] == ["done"], 15, "the row pushed again and settled")
            assert len(fake_providers.sendgrid.calls_to("POST", "/v3/asm/suppressions/global")) == 2
        finally:
            stop.set()
            if thread.is_alive():
                thread.join(timeout=10)
            hub.close()


def write_worker_config(
    path,
    database_url: str,
    fakes: FakeProviders,
    *,
    providers: tuple[str, ...] = ("sendgrid",),
    lease_seconds: int = 120,
    batch_size: int = 1000,
    extra: str = "",
):
    """A TOML file for a child process: the test's database, the fakes, short polls."""
    tables = "".join(
        f'\n[providers.{slug}]\nenabled = true\nbase_url = "{fakes.url(slug)}"\n'
        f"batch_size = {batch_size}\n{PROVIDER_TABLES[slug]}\n"
        for slug in providers
    )
    path.write_text(
        f"""
[database]
url = "{database_url}"

[security]
token_secret_env = "OPTOUT_HUB_SECRET"
admin_token_env = "OPTOUT_HUB_ADMIN_TOKEN"

[worker]
collect_window_seconds = 0.0
poll_interval_seconds = 0.05
lease_seconds = {lease_seconds}
{tables}{extra}"""
    )
    return path


class WorkerProcess:
    """``optout-hub worker`` in a child process, its output in a file for failure messages."""

    def __init__(self, config_path, env: dict[str, str], log_path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "adapters", "worker", "--config", str(config_path)],
                env={**os.environ, **env},
                stdout=log,
                stderr=log,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def pending(hub: Hub) -> int:
    with hub.sessions() as session:
        return sum(counts["pending"] for counts in outbox_summary(session).values())


@pytest.fixture
def worker_env(test_env: dict[str, str], provider_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, **provider_env}


def test_a_worker_killed_mid_push_loses_nothing(
    tmp_path, database_url: str, fake_providers: FakeProviders, worker_env: dict[str, str]
) -> None:
    path = write_worker_config(tmp_path / "worker.toml", database_url, fake_providers, lease_seconds=1)
    hub = Hub.open(load_config(path, worker_env), upgrade=True)  # the real clock, like the worker's
    try:
        hub.record([optout(f"k{i}@example.com") for i in range(50)])
        fake = fake_providers.sendgrid
        with fake.hold():
            first = WorkerProcess(path, worker_env, tmp_path / "first.log")
            assert fake.waiting.acquire(timeout=30), first.output()  # the push is in flight
            first.proc.kill()
            first.proc.wait(timeout=10)
        assert {r.state for r in rows(hub)} == {"pending"}  # nothing was settled, nothing lost
        second = WorkerProcess(path, worker_env, tmp_path / "second.log")
        try:
            wait_until(lambda: pending(hub) == 0, 30, "the restarted worker to drain")
        finally:
            second.proc.terminate()
            assert second.proc.wait(timeout=30) == 0, second.output()
        assert {r.state for r in rows(hub)} == {"done"}
        pushed = [e for c in fake.calls_to("POST") for e in c.body["recipient_emails"]]
        assert collections.Counter(pushed) == {f"k{i}@example.com": 2 for i in range(50)}  # the held call, then again
    finally:
        hub.close()


def test_two_worker_processes_on_postgresql_push_each_row_exactly_once(
    tmp_path, postgresql_url: str, fake_providers: FakeProviders, worker_env: dict[str, str]
) -> None:
    path = write_worker_config(tmp_path / "worker.toml", postgresql_url, fake_providers, batch_size=25)
    hub = Hub.open(load_config(path, worker_env), upgrade=True)
    try:
        hub.record([optout(f"w{i}@example.com") for i in range(5000)])
        fake_providers.sendgrid.latency = 0.01
        workers = [WorkerProcess(path, worker_env, tmp_path / f"worker{n}.log") for n in range(2)]
        try:
            wait_until(lambda: pending(hub) == 0, 120, "two workers to drain 5,000 rows")
        finally:
            for worker in workers:
                worker.proc.terminate()
            for worker in workers:
                assert worker.proc.wait(timeout=30) == 0, worker.output()
        pushed = collections.Counter(
            e for c in fake_providers.sendgrid.calls_to("POST") for e in c.body["recipient_emails"]
        )
        assert len(pushed) == 5000 and set(pushed.values()) == {1}
        done = rows(hub)
        assert {r.state for r in done} == {"done"} and {r.attempts for r in done} == {1}
        assert len({r.lease_owner for r in done}) == 2  # both took part
    finally:
        hub.close()


def test_two_workers_with_a_short_lease_make_one_per_address_call_each(
    tmp_path, postgresql_url: str, fake_providers: FakeProviders, worker_env: dict[str, str]
) -> None:
    topic = '\n[[topics]]\nname = "newsletter"\nhubspot_subscription = "5678"\n'
    path = write_worker_config(
        tmp_path / "worker.toml", postgresql_url, fake_providers, providers=("hubspot",), lease_seconds=1, extra=topic
    )
    hub = Hub.open(load_config(path, worker_env), upgrade=True)
    try:
        hub.record([optout(f"h{i}@example.com", scope=topic_scope("newsletter")) for i in range(1500)])
        fake_providers.hubspot.latency = 0.005  # a claim of 1,000 one-by-one calls outlasts the 1 s lease
        workers = [WorkerProcess(path, worker_env, tmp_path / f"worker{n}.log") for n in range(2)]
        try:
            wait_until(lambda: pending(hub) == 0, 120, "two workers to push 1,500 topic opt-outs")
        finally:
            for worker in workers:
                worker.proc.terminate()
            for worker in workers:
                assert worker.proc.wait(timeout=30) == 0, worker.output()
        calls = fake_providers.hubspot.calls_to("POST", "/communication-preferences/v3/")
        assert len(calls) == 1500  # one per address ("already unsubscribed" answers carry no body)
        times = sorted(c.at for c in calls)  # each worker starts at most 250 calls in any 10 s
        in_10_s = max(bisect.bisect_left(times, t + 10) - i for i, t in enumerate(times))
        assert in_10_s <= 2 * (250 + 5)  # answers are timed on arrival: up to a slot's worth late
        assert fake_providers.hubspot.unsubscribed["5678"] == {f"h{i}@example.com" for i in range(1500)}
        done = rows(hub)
        assert {r.state for r in done} == {"done"} and len({r.lease_owner for r in done}) == 2
    finally:
        hub.close()


def test_the_worker_part_of_serve_starts_stops_and_honours_enabled(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    push_config: Config,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from adapters.cli import WorkerComponent, _components, serve_parts

    disabled = make_config({"worker": {"enabled": False}})
    assert serve_parts(disabled) == ["smtp", "http"] and serve_parts(push_config) == ["smtp", "http", "worker"]
    # `optout-hub worker` with that same file is the one place the worker runs: it starts
    assert [type(c) for c in _components(make_hub(disabled), ["worker"])] == [WorkerComponent]
    (component,) = _components(make_hub(push_config), ["worker"])
    assert isinstance(component, WorkerComponent)
    component.start()
    assert "push worker running for mailchimp, sendgrid, hubspot" in capsys.readouterr().out
    component.stop()
    assert not component._thread.is_alive()


# --- commands: sync, providers check -----------------------------------------------------


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_sync_prints_pushed_retried_and_dead_per_provider(
    tmp_path, database_url: str, fake_providers: FakeProviders, worker_env: dict[str, str]
) -> None:
    path = write_worker_config(
        tmp_path / "sync.toml", database_url, fake_providers, providers=("mailchimp", "sendgrid", "hubspot")
    )
    hub = Hub.open(load_config(path, worker_env), upgrade=True)
    try:
        hub.record([optout("s1@example.com"), optout("s2@example.com", source=Source.MAILCHIMP)])
    finally:
        hub.close()
    key = worker_env["SENDGRID_API_KEY"]
    fake_providers.sendgrid.fail_next(400, body={"errors": [{"field": None, "message": f"key {key} may not do this"}]})
    fake_providers.hubspot.fail_next(503)
    done = run_cli(["sync", "--config", str(path)], worker_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "mailchimp: pushed 1, retried 0, dead 0"
    assert lines[1] == "sendgrid: pushed 0, retried 0, dead 2"
    assert (
        lines[2].startswith("  dead: row ")
        and "s1@example.com global" in lines[2]
        and "400 key *** may not do this" in lines[2]
    )
    assert lines[4] == "hubspot: pushed 0, retried 2, dead 0"
    assert key not in done.stdout + done.stderr
    assert (
        "push sendgrid unsubscribe global: 2 rows, status 400, done=0 retry=0 dead=2" in done.stderr
    )  # one log line per call


def test_providers_check_prints_ok_or_the_providers_error(
    tmp_path, database_url: str, fake_providers: FakeProviders, worker_env: dict[str, str]
) -> None:
    path = write_worker_config(
        tmp_path / "check.toml", database_url, fake_providers, providers=("mailchimp", "sendgrid", "hubspot")
    )
    ok = run_cli(["providers", "check", "--config", str(path)], worker_env)
    assert (ok.returncode, ok.stdout.splitlines()) == (
        0,
        [
            "mailchimp: ok (ping ok; lists: list1 (List list1), list2 (List list2))",
            "sendgrid: ok (scopes ok; groups: none configured)",
            "hubspot: ok (token ok; subscriptions: 5678 (Subscription 5678); unsubscribe-all: batch "
            "(needs communication_preferences.statuses.batch.write); write scopes are proven only by a push)",
        ],
    )
    fake_providers.sendgrid.scopes = ["mail.send"]
    bad = run_cli(["providers", "check", "--config", str(path)], {**worker_env, "HUBSPOT_ACCESS_TOKEN": "pat-revoked"})
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[1:] == [
        "sendgrid: error: the API key lacks the scopes asm.suppressions.global.create, asm.groups.suppressions.create",
        "hubspot: error: GET /communication-preferences/v3/definitions: 401 Authentication credentials not found.",
    ]
    assert "pat-revoked" not in bad.stdout + bad.stderr


# --- end to end: provider webhooks in, pushes out to the other providers ------------------


def test_webhook_opt_outs_reach_the_other_providers_and_never_echo(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app,
    fake_providers: FakeProviders,
    provider_env: dict[str, str],
    make_worker: Callable[..., Worker],
    clock: Clock,
) -> None:
    from webhooks import create_app

    providers = {
        "mailchimp": {
            "enabled": True,
            "base_url": fake_providers.url("mailchimp"),
            "lists": ["list1", "list2"],
            "webhook_secret_env": "",
        },
        "sendgrid": {"enabled": True, "base_url": fake_providers.url("sendgrid"), "webhook_public_key_env": ""},
        "hubspot": {"enabled": True, "base_url": fake_providers.url("hubspot"), "subscription_ids": ["5678"]},
    }
    topics = [{"name": "newsletter", "mailchimp_list": "list1", "sendgrid_group": 1234, "hubspot_subscription": "5678"}]
    hub = make_hub(
        make_config(
            {"providers": providers, "topics": topics},
            env={**provider_env, "HUBSPOT_CLIENT_SECRET": "hubspot-client-secret"},
        )
    )
    app = serve_app(create_app(hub=hub))
    ts = int(clock().timestamp())
    sendgrid_events = [
        {"email": "sg-person@example.com", "timestamp": ts, "event": "unsubscribe", "sg_event_id": "sg-1"},
        {
            "email": "grp@example.com",
            "timestamp": ts,
            "event": "group_unsubscribe",
            "asm_group_id": 1234,
            "sg_event_id": "sg-2",
        },
    ]
    answer = requests.post(
        f"{app.url}/webhooks/sendgrid",
        data=json.dumps(sendgrid_events),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    fake_providers.hubspot.contacts["1246965"] = "hs-person@example.com"
    body = json.dumps(
        [
            {
                "objectId": 1246965,
                "propertyName": "hs_email_optout",
                "propertyValue": "true",
                "changeSource": "CRM",
                "eventId": 3816279340,
                "subscriptionId": 25,
                "portalId": 33,
                "appId": 1160452,
                "occurredAt": ts * 1000,
                "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0,
            }
        ]
    )
    stamp = str(ts * 1000)
    message = ("POST" + hub.config.http.public_url + "/webhooks/hubspot" + body + stamp).encode()
    signature = base64.b64encode(hmac.new(b"hubspot-client-secret", message, hashlib.sha256).digest()).decode()
    answer = requests.post(
        f"{app.url}/webhooks/hubspot",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": stamp,
        },
        timeout=10,
    )
    assert answer.status_code in (200, 204), answer.text

    make_worker(hub).drain()  # resolves the HubSpot contact id, then pushes

    assert fake_providers.mailchimp.members == {
        "list1": {
            "sg-person@example.com": "unsubscribed",
            "grp@example.com": "unsubscribed",
            "hs-person@example.com": "unsubscribed",
        },
        "list2": {"sg-person@example.com": "unsubscribed", "hs-person@example.com": "unsubscribed"},
    }
    assert fake_providers.sendgrid.global_suppressions == {"hs-person@example.com"}  # nothing echoed back to SendGrid
    assert fake_providers.sendgrid.group_suppressions == {1234: set()}
    assert fake_providers.hubspot.unsubscribed_all == {"sg-person@example.com"}  # nor to HubSpot
    assert fake_providers.hubspot.unsubscribed == {"5678": {"grp@example.com"}}
    assert {r.state for r in rows(hub)} == {"done"}


def test_a_restarted_worker_takes_back_at_once_what_a_killed_one_had_claimed(
    push_hub: Hub, make_worker: Callable[..., Worker], fake_providers: FakeProviders, clock: Clock
) -> None:
    """A worker killed mid-push leaves its rows leased for ``lease_seconds``; the next worker
    started on the same host sees that the owner's process is gone and pushes them at once."""
    push_hub.record([optout("k@example.com")])
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # a process id that no longer runs
    gone_owner = f"{worker_id().split(':')[0]}:{killed.pid}:deadbeef"
    live_owner = f"{worker_id().split(':')[0]}:{os.getpid()}:cafecafe"  # this very process: alive
    with push_hub.sessions.begin() as session:
        lease = {"lease_until": clock() + timedelta(seconds=120)}
        session.execute(
            update(OutboxRow).where(OutboxRow.provider == "sendgrid").values(lease_owner=gone_owner, **lease)
        )
        session.execute(
            update(OutboxRow).where(OutboxRow.provider == "mailchimp").values(lease_owner=live_owner, **lease)
        )
    worker = make_worker(push_hub)
    assert worker.release_orphaned_leases() == 1
    tallies = worker.drain()
    assert tallies["sendgrid"].pushed == 1 and fake_providers.sendgrid.global_suppressions == {"k@example.com"}
    assert "mailchimp" not in tallies or tallies["mailchimp"].pushed == 0  # a live owner's lease is kept
