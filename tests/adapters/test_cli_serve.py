"""``optout-hub serve`` (SMTP, HTTP and the push worker in one process) as a real process under
mixed load (:mod:`tests.support.mixed_load`: mail, signed webhooks, one-click, the API),
pushing to the fake providers:

- killed with SIGKILL at random moments and restarted, on SQLite and PostgreSQL: every
  acknowledged opt-out ends honoured in the store and pushed;
- its PostgreSQL (a private cluster) stopped for 45 s and started again, without restarting
  ``serve``: nothing is acknowledged while the database is down (451 / 503 with
  ``Retry-After``, never another 5xx), and every acknowledged opt-out ends honoured and pushed.
  Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_providers import FakeProviders
from tests.support.hub_process import HubProcess
from tests.support.mixed_load import (
    ACKNOWLEDGED,
    ANSWERED,
    CLIENT_ERROR,
    FAILED,
    NO_ANSWER,
    REFUSED,
    MixedLoad,
    issue_recipients,
    provider_tables,
)
from tests.support.pg_cluster import PrivateCluster, private_cluster

OUTAGE_SECONDS = 45


def _serve(tmp_path: Path, database_url: str, fakes: FakeProviders, **options: float) -> HubProcess:
    tables, env = provider_tables(fakes)
    return HubProcess(tmp_path, database_url, extra=tables, worker=True, env=env, **options)


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as started:
        yield started


def _wait_settled(load: MixedLoad, fakes: FakeProviders, timeout: float, before: float = float("inf")) -> float:
    """Seconds until every opt-out acknowledged (before ``before``) is in the store and at the
    providers."""
    started = time.monotonic()
    while True:
        not_stored, not_pushed = load.unsettled(fakes, before)
        if not not_stored and not not_pushed:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, (
            f"{len(not_stored)} acknowledged opt-out(s) not honoured: {sorted(not_stored)[:10]}; "
            f"{len(not_pushed)} push(es) missing: {sorted(not_pushed)[:10]}"
        )
        time.sleep(0.5)


def test_serve_killed_at_random_moments_under_mixed_load_honours_and_pushes_every_acknowledged_opt_out(
    tmp_path: Path, database_url: str, fake_providers: FakeProviders
) -> None:
    rng = random.Random(15)
    hub = _serve(tmp_path, database_url, fake_providers)
    hub.start("serve")
    try:
        with MixedLoad(hub, issue_recipients(hub, 100)) as load:
            for _ in range(4):
                time.sleep(rng.uniform(1.0, 3.0))  # mid-DATA, mid-commit, mid-classification, mid-push
                hub.kill()
                hub.start("serve")
            time.sleep(2)
        assert load.count(ACKNOWLEDGED) > 50, load.attempts[-5:]
        assert {a.channel for a in load.attempts if a.outcome == ACKNOWLEDGED} >= {
            "stop",
            "mailto",
            "mailchimp",
            "sendgrid",
            "one-click",
            "api",
        }
        assert load.count(FAILED) == load.count(CLIENT_ERROR) == 0, [
            a for a in load.attempts if a.outcome in (FAILED, CLIENT_ERROR)
        ]
        _wait_settled(load, fake_providers, timeout=90)
        assert hub.stop() == 0
    finally:
        if hub.proc is not None:
            hub.kill()


def test_a_45_s_postgresql_outage_under_mixed_load_acknowledges_nothing_and_loses_nothing(
    tmp_path: Path, cluster: PrivateCluster, fake_providers: FakeProviders
) -> None:
    hub = _serve(tmp_path, cluster.url, fake_providers, retry_max_seconds=60.0)  # the default back-off
    hub.start("serve")
    try:
        with MixedLoad(hub, issue_recipients(hub, 300)) as load:
            time.sleep(8)
            stopping = time.monotonic()
            backlog = load.unsettled(fake_providers, before=stopping)  # acknowledged, not yet honoured or pushed
            cluster.stop()
            down = time.monotonic()
            time.sleep(OUTAGE_SECONDS)
            restarting = time.monotonic()
            cluster.start()
            up = time.monotonic()
            backlog_settled = _wait_settled(load, fake_providers, timeout=150, before=stopping)
            time.sleep(max(0.0, 5 - backlog_settled))
        assert hub.proc is not None and hub.proc.poll() is None, "serve did not survive the outage"
        settled = _wait_settled(load, fake_providers, timeout=120)
        during = [a for a in load.attempts if a.started >= down and a.ended <= restarting]
        after = [a for a in load.attempts if a.started >= up and a.outcome == ACKNOWLEDGED]
        first_after = min(a.ended for a in after) - up
        figures = {
            "requests tried": len(load.attempts),
            "acknowledged (250 / 2xx)": load.count(ACKNOWLEDGED),
            "refused (451 / 503 + Retry-After)": load.count(REFUSED),
            "5xx other than 503": load.count(FAILED),
            "4xx": load.count(CLIENT_ERROR),
            "no answer": load.count(NO_ANSWER),
            "tried during the outage": len(during),
            "acknowledged during the outage": sum(a.outcome == ACKNOWLEDGED for a in during),
            "lost": 0,  # _wait_settled found every acknowledged opt-out honoured and pushed
            "acknowledged before the outage, not honoured / pushed when it began": (
                f"{len(backlog[0])} / {len({a for a, _ in backlog[1]})}"
            ),
            "first acknowledgement after the database came back (s)": round(first_after, 1),
            "all acknowledged before the outage honoured and pushed, after it (s)": round(backlog_settled, 1),
            "all acknowledged honoured and pushed, after the load stopped (s)": round(settled, 1),
        }
        print("\nPostgreSQL down for 45 s under mixed load:")
        for name, value in figures.items():
            print(f"  {name}: {value}")
        wrong = [a for a in during if a.outcome not in (REFUSED, ANSWERED)]  # ANSWERED: a relay attempt's 550
        assert during and not wrong, wrong[:5]
        assert load.count(FAILED) == load.count(CLIENT_ERROR) == load.count(NO_ANSWER) == 0, [
            a for a in load.attempts if a.outcome in (FAILED, CLIENT_ERROR, NO_ANSWER)
        ][:5]
        assert load.count(ACKNOWLEDGED) > 100 and after
        assert backlog_settled < 10 and settled < 10  # not at the end of back-offs the outage grew
        assert hub.stop() == 0
    finally:
        if hub.proc is not None:
            hub.kill()
