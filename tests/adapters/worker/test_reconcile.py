"""Reconciliation end to end: changes made in each provider's UI (no webhook) reach the hub by
``reconcile`` and the other providers through the real worker, over real HTTP to the fakes,
on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import os
import pty
import select as select_module
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from sqlalchemy import func, select

from adapters.config import Config, load_config
from adapters.events import Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from adapters.providers import make_clients, make_pullers
from adapters.store.models import ConsentConflict, Event, OutboxRow, ReconcileCheckpoint, Suppression
from adapters.worker.outbox import Worker
from adapters.worker.reconcile import Tally, reconcile, run_every
from tests.support.fake_providers import FakeProviders

NEWS = topic_scope("newsletter")


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def rhub(make_hub: Callable[[Config], Hub], make_push_config: Callable[..., Config], fake_providers, clock) -> Hub:
    # The fakes keep real time; a pull's window ends a minute before the hub's now.
    clock.now = clock.now.fromtimestamp(time.time() + 120, tz=clock.now.tzinfo)
    config = make_push_config(fake_providers)
    topic = dataclasses.replace(config.topics[0], mailchimp_list="list3")  # a list of its own
    fake_providers.mailchimp.members["list3"] = {}
    return make_hub(dataclasses.replace(config, topics=(topic,)))


def run(hub: Hub, http: requests.Session, **kwargs: object) -> dict[str, Tally]:
    return reconcile(hub, make_pullers(hub.config, http, now=hub.clock), **kwargs)  # type: ignore[arg-type]


def drain(hub: Hub, http: requests.Session) -> None:
    Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http, rng=lambda: 1.0).drain()


def suppressed(hub: Hub, email: str, scope: str = "global") -> bool:
    with hub.sessions() as session:
        row = session.get(Suppression, (email, scope))
        return bool(row and row.suppressed)


def count(hub: Hub, column: object, *where: object) -> int:
    with hub.sessions() as session:
        return session.scalar(select(func.count(column)).where(*where)) or 0  # type: ignore[arg-type]


def test_an_unsubscribe_made_in_each_providers_ui_reaches_the_hub_and_the_others(
    rhub: Hub, http: requests.Session, fake_providers: FakeProviders
) -> None:
    fake_providers.mailchimp.ui_set("list2", ["mc-ui@example.com"], "unsubscribed", reason="too many")
    fake_providers.mailchimp.ui_set("list3", ["mc-topic@example.com"], "unsubscribed")
    fake_providers.sendgrid.ui_add("unsubscribes", ["sg-ui@example.com"])
    fake_providers.sendgrid.ui_add("spam_reports", ["sg-spam@example.com"])
    fake_providers.sendgrid.ui_group(1234, add=["sg-group@example.com"])
    fake_providers.hubspot.ui_status(["hs-ui@example.com"])
    fake_providers.hubspot.ui_status(["hs-topic@example.com"], "5678")

    tallies = run(rhub, http, full=True)

    assert {slug: t.error for slug, t in tallies.items()} == {"mailchimp": "", "sendgrid": "", "hubspot": ""}
    assert tallies["mailchimp"].new == 2 and tallies["sendgrid"].new == 3 and tallies["hubspot"].new == 2
    for email in ("mc-ui@example.com", "sg-ui@example.com", "sg-spam@example.com", "hs-ui@example.com"):
        assert suppressed(rhub, email), email
    for email in ("mc-topic@example.com", "sg-group@example.com", "hs-topic@example.com"):
        assert suppressed(rhub, email, NEWS), email
    with rhub.sessions() as session:
        pulled = session.scalars(select(Event).where(Event.email == "mc-ui@example.com")).one()
        assert (pulled.source, pulled.verification, pulled.reason) == ("mailchimp", "pull", "too many")

    drain(rhub, http)  # the real worker pushes them to the other providers
    assert "sg-ui@example.com" in fake_providers.mailchimp.members["list1"]
    assert "mc-ui@example.com" in fake_providers.sendgrid.global_suppressions
    assert "mc-ui@example.com" in fake_providers.hubspot.unsubscribed_all
    assert "hs-ui@example.com" in fake_providers.sendgrid.global_suppressions
    assert "sg-group@example.com" in fake_providers.hubspot.unsubscribed["5678"]
    assert "hs-topic@example.com" in fake_providers.sendgrid.group_suppressions[1234]
    assert "mc-ui@example.com" not in fake_providers.mailchimp.members["list1"]  # no echo to its source

    again = run(rhub, http)  # a repeated pull stores nothing twice
    assert all(t.new == 0 and t.conflicts == 0 and not t.error for t in again.values()), again["mailchimp"]
    assert count(rhub, Event.id) == 7  # the hub's own pushes, read back, are not the providers' records


def test_drift_is_pushed_again_and_a_removal_is_a_conflict_pushed_back(
    rhub: Hub, http: requests.Session, fake_providers: FakeProviders
) -> None:
    rhub.record(
        [
            OptOutEvent(email="gone@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API, scope=NEWS),
            OptOutEvent(email="drift@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API, scope=NEWS),
        ]
    )
    drain(rhub, http)
    assert {"gone@example.com", "drift@example.com"} <= fake_providers.sendgrid.group_suppressions[1234]
    assert run(rhub, http, full=True)["sendgrid"].conflicts == 0  # the first snapshot
    # In SendGrid's UI: someone removes gone@ from the group. drift@'s push is lost another way:
    # its row is dead (say a bad key then) and the group lacks it.
    fake_providers.sendgrid.ui_group(1234, remove=["gone@example.com", "drift@example.com"])
    with rhub.sessions.begin() as session:
        row = session.scalars(
            select(OutboxRow).where(OutboxRow.email == "drift@example.com", OutboxRow.provider == "sendgrid")
        ).one()
        row.state = "dead"

    tally = run(rhub, http)["sendgrid"]

    assert (tally.conflicts, tally.drift) == (1, 1), tally
    assert suppressed(rhub, "gone@example.com", NEWS)  # an unproven resubscribe lifts nothing
    with rhub.sessions() as session:
        conflict = session.scalars(select(ConsentConflict)).one()
        event = session.get(Event, conflict.event_id)
        assert (event.email, event.kind, event.source, event.verification) == (
            "gone@example.com",
            "resubscribe",
            "sendgrid",
            "pull",
        )
    drain(rhub, http)
    assert {"gone@example.com", "drift@example.com"} <= fake_providers.sendgrid.group_suppressions[1234]
    assert run(rhub, http)["sendgrid"].conflicts == 0  # pushed back: nothing left to find


def test_a_resubscribe_in_mailchimps_and_hubspots_ui_is_a_conflict_pushed_back(
    rhub: Hub, http: requests.Session, fake_providers: FakeProviders
) -> None:
    fake_providers.mailchimp.ui_set("list3", ["m@example.com"], "unsubscribed")
    fake_providers.hubspot.ui_status(["h@example.com"], "5678")
    run(rhub, http, full=True)
    assert suppressed(rhub, "m@example.com", NEWS) and suppressed(rhub, "h@example.com", NEWS)
    fake_providers.mailchimp.ui_set("list3", ["m@example.com"], "subscribed")
    fake_providers.hubspot.ui_status(["h@example.com"], "5678", status="SUBSCRIBED")

    tallies = run(rhub, http)

    assert (tallies["mailchimp"].conflicts, tallies["hubspot"].conflicts) == (1, 1), tallies
    assert count(rhub, ConsentConflict.event_id) == 2
    drain(rhub, http)
    assert fake_providers.mailchimp.members["list3"]["m@example.com"] == "unsubscribed"
    assert "h@example.com" in fake_providers.hubspot.unsubscribed["5678"]


def test_a_pull_that_fails_mid_way_resumes_from_its_checkpoint_without_storing_twice(
    rhub: Hub, http: requests.Session, fake_providers: FakeProviders
) -> None:
    fake = fake_providers.sendgrid
    fake.ui_add("unsubscribes", [f"u{i}@example.com" for i in range(1200)], created=int(time.time()) - 3600)
    real_route = fake.route
    pages = []

    def route(method, path, query, body):  # the third suppression page fails for good (a 401)
        if path == "/v3/suppression/unsubscribes":
            pages.append(query["offset"])
            if len(pages) == 3:
                from tests.support.fake_providers import Reject

                raise Reject(401, {"errors": [{"field": None, "message": "authorization required"}]}, unexpected=False)
        return real_route(method, path, query, body)

    fake.route = route  # type: ignore[method-assign]
    pullers = make_pullers(rhub.config, http, now=rhub.clock)
    first = reconcile(rhub, {"sendgrid": pullers["sendgrid"]}, full=True)["sendgrid"]
    assert "401" in first.error and first.new == 1000
    with rhub.sessions() as session:
        checkpoint = session.get(ReconcileCheckpoint, ("sendgrid", "full"))
        assert checkpoint.checkpoint is not None and checkpoint.last_success_at is None

    second = reconcile(rhub, {"sendgrid": pullers["sendgrid"]}, full=True)["sendgrid"]

    assert (second.error, second.resumed, second.new) == ("", True, 200), second
    assert pages == [["0"], ["500"], ["1000"], ["1000"]]  # resumed at the page that failed
    assert count(rhub, Event.id) == 1200
    with rhub.sessions() as session:
        checkpoint = session.get(ReconcileCheckpoint, ("sendgrid", "full"))
        assert checkpoint.checkpoint is None and checkpoint.last_success_at is not None


def test_backfill_of_100000_suppressions(
    rhub: Hub, http: requests.Session, fake_providers: FakeProviders, capsys: pytest.CaptureFixture[str]
) -> None:
    past = int(time.time()) - 86_400
    fake_providers.mailchimp.ui_set("list2", [f"mc{i}@example.com" for i in range(55_000)], "unsubscribed", at=past)
    fake_providers.sendgrid.ui_add("unsubscribes", [f"sg{i}@example.com" for i in range(30_000)], created=past)
    fake_providers.sendgrid.ui_add("spam_reports", [f"sp{i}@example.com" for i in range(5_000)], created=past)
    fake_providers.sendgrid.ui_group(1234, add=[f"gr{i}@example.com" for i in range(8_000)])
    fake_providers.hubspot.ui_status([f"hs{i}@example.com" for i in range(2_000)])

    started = time.monotonic()
    tallies = run(rhub, http, full=True)
    elapsed = time.monotonic() - started

    with capsys.disabled():
        for slug, tally in tallies.items():
            print(f"\n  backfill {tally.line(slug)}", end="")
        print(f"\n  backfill: 100,000 suppressions in {elapsed:.1f} s", end="")
    assert sum(t.new for t in tallies.values()) == 100_000, tallies
    assert tallies["sendgrid"].calls == 61 + 11 + 1 + 1  # pages of 500, each list ends on a short page
    assert count(rhub, Suppression.email_key, Suppression.suppressed) == 100_000
    assert elapsed < 180  # 41 s on SQLite, 78 s on PostgreSQL at a load average of ~10 on 2 CPUs


def test_pulled_events_are_proof_of_no_one(rhub: Hub, http: requests.Session, fake_providers: FakeProviders) -> None:
    fake_providers.sendgrid.ui_add("unsubscribes", ["p@example.com"])
    run(rhub, http, full=True)
    with rhub.sessions() as session:
        event = session.scalars(select(Event)).one()
    assert event.verification == Verification.PULL.value


def test_a_reconcile_process_killed_mid_pull_resumes_from_its_checkpoint(
    tmp_path, database_url: str, fake_providers: FakeProviders, provider_env: dict[str, str], test_env: dict[str, str]
) -> None:
    fake = fake_providers.sendgrid
    fake.ui_add("unsubscribes", [f"k{i}@example.com" for i in range(7_000)], created=int(time.time()) - 3600)
    path = sendgrid_config(tmp_path, database_url, fake.url)
    env = {**os.environ, **test_env, **provider_env}
    gate, reached = threading.Event(), threading.Semaphore(0)
    real_route, offsets = fake.route, []

    def route(method, path, query, body):  # the 13th page waits: 12 pages read, 10 stored
        if path == "/v3/suppression/unsubscribes":
            offsets.append(int(query["offset"][0]))
            if len(offsets) == 13:
                reached.release()
                gate.wait(60)
        return real_route(method, path, query, body)

    fake.route = route  # type: ignore[method-assign]
    command = [sys.executable, "-m", "adapters", "reconcile", "--full", "--config", str(path)]
    hub = Hub.open(load_config(path, {**test_env, **provider_env}), upgrade=True)
    try:
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert reached.acquire(timeout=60), "the pull never reached its 13th page"
            first.kill()  # SIGKILL: no clean-up of any kind
            first.wait(timeout=10)
        finally:
            gate.set()
        assert count(hub, Event.id) == 5_000  # the pages stored before the kill, with their checkpoint
        offsets.clear()
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stdout + second.stderr
        assert offsets[0] == 5_000  # resumed after the last page stored, not from the top
        assert "sendgrid: pulled 2000, new opt-outs 2000, drift repaired 0, conflicts 0, calls" in second.stdout
        assert "(resumed)" in second.stdout
        assert count(hub, Event.id) == 7_000 and count(hub, Suppression.email_key, Suppression.suppressed) == 7_000
    finally:
        hub.close()


def test_the_worker_pulls_every_interval(
    make_hub: Callable[[Config], Hub], make_push_config: Callable[..., Config], fake_providers: FakeProviders, clock
) -> None:
    clock.now = clock.now.fromtimestamp(time.time() + 120, tz=clock.now.tzinfo)
    hub = make_hub(make_push_config(fake_providers, reconcile={"interval_minutes": 0.005}))  # 0.3 s
    stop = threading.Event()
    thread = threading.Thread(target=run_every, args=(hub, stop))
    thread.start()
    try:
        fake_providers.sendgrid.ui_add("unsubscribes", ["first@example.com"])
        wait_for(lambda: suppressed(hub, "first@example.com"))
        fake_providers.hubspot.ui_status(["second@example.com"])  # after the first pull: the next one finds it
        wait_for(lambda: suppressed(hub, "second@example.com"))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def sendgrid_config(tmp_path, database_url: str, url: str):
    """A TOML file for a child process: the test's database, SendGrid at the fake."""
    path = tmp_path / "reconcile.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n[security]\ntoken_secret_env = "OPTOUT_HUB_SECRET"\n'
        f'admin_token_env = "OPTOUT_HUB_ADMIN_TOKEN"\n\n[providers.sendgrid]\nenabled = true\n'
        f'base_url = "{url}"\nwebhook_public_key_env = ""\n'
    )
    return path


def test_the_backfill_shows_progress_on_a_terminal_only(
    tmp_path, database_url: str, fake_providers: FakeProviders, provider_env: dict[str, str], test_env: dict[str, str]
) -> None:
    fake_providers.sendgrid.ui_add("unsubscribes", [f"t{i}@example.com" for i in range(600)], created=1_700_000_000)
    path = sendgrid_config(tmp_path, database_url, fake_providers.sendgrid.url)
    command = [sys.executable, "-m", "adapters", "reconcile", "--full", "--config", str(path)]
    env = {**os.environ, **test_env, **provider_env}
    Hub.open(load_config(path, {**test_env, **provider_env}), upgrade=True).close()  # db upgrade (PostgreSQL)
    master, slave = pty.openpty()
    try:
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120)
        os.close(slave)
        shown = b""
        while select_module.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert done.returncode == 0
    assert b"sendgrid: 600 pulled, 600 new" in shown  # the progress line, on the terminal
    assert "sendgrid: pulled 600, new opt-outs 600, drift repaired 0, conflicts 0, calls 4" in done.stdout
    piped = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)  # nothing new now
    assert piped.stderr == "" and "sendgrid: pulled 600, new opt-outs 0" in piped.stdout
