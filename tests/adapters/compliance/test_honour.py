"""``report honour`` over a seeded history: opt-outs recorded and pushed by the real worker
against the fake providers at known times (the injected clock), every figure checked by hand;
then the command itself, whose exit status says whether an opt-out is past a limit."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from adapters.cli import main
from adapters.compliance.deadlines import Limits
from adapters.compliance.honour import opt_out_kinds, percentiles, write_report
from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.environment import ADMIN_TOKEN, TEST_SECRET
from tests.support.fake_providers import FakeProviders, provider_env_vars

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday
PROVIDERS = ("mailchimp", "sendgrid")


def optout(email: str, source: Source, *, received: datetime | None = None) -> OptOutEvent:
    return OptOutEvent(email=email, kind=Kind.UNSUBSCRIBE, source=source, received_at=received)


def drain(hub: Hub) -> None:
    with requests.Session() as http:
        Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http).drain()


def test_report_figures_checked_by_hand(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    hub = make_hub(make_push_config(fake_providers, providers=PROVIDERS))
    clock.now = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)  # Wednesday
    hub.record([optout("e@example.com", Source.API)])
    fake_providers.mailchimp.fail_next(400, times=2)
    fake_providers.sendgrid.fail_next(400)
    drain(hub)  # refused for good at both: dead
    clock.now = T0
    hub.record([optout("a@example.com", Source.API)])
    clock.advance(60)
    drain(hub)  # a confirmed at both at 60
    hub.record([optout("b@example.com", Source.ONECLICK, received=T0 + timedelta(seconds=30))])  # stored at 60
    clock.advance(240)
    fake_providers.sendgrid.fail_next(500)
    drain(hub)  # b: Mailchimp at 300; SendGrid to retry
    clock.now = T0 + timedelta(seconds=3600)
    drain(hub)  # b: SendGrid at 3600
    hub.record([optout("c@example.com", Source.SENDGRID)])  # no echo: Mailchimp only
    fake_providers.mailchimp.fail_next(400, times=2)
    drain(hub)  # c refused for good by Mailchimp
    hub.record([optout("d@example.com", Source.API)])  # not pushed yet
    clock.now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # Friday noon

    out = io.StringIO()
    with hub.sessions() as session:
        status = write_report(
            session,
            out,
            since=T0 - timedelta(days=1),
            now=clock.now,
            limits=Limits(),
            kinds=opt_out_kinds(False),
            fmt="json",
        )
    report = json.loads(out.getvalue())
    assert status == 1
    by_email = {r["email"]: r for r in report["requests"]}
    assert sorted(by_email) == ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]  # e: before --since
    b = by_email["b@example.com"]
    assert (b["received_at"], b["stored_at"], b["settled_at"]) == (
        "2026-11-24T12:00:30+00:00",
        "2026-11-24T12:01:00+00:00",
        "2026-11-24T13:00:00+00:00",
    )
    assert b["settled"] == {"mailchimp": "2026-11-24T12:05:00+00:00", "sendgrid": "2026-11-24T13:00:00+00:00"}
    assert by_email["c@example.com"]["settled"] == {"mailchimp": None}
    assert by_email["d@example.com"]["settled_at"] is None

    # per source: api = a (stored 0, settled 60) and d (stored 0, unsettled); one-click = b
    # (stored 30, settled 3570); sendgrid = c (stored 0, unsettled)
    assert report["by_source"] == {
        "api": {
            "requests": 2,
            "settled": 1,
            "to_stored_seconds": {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0},
            "to_settled_seconds": {"p50": 60.0, "p90": 60.0, "p99": 60.0, "max": 60.0},
        },
        "oneclick": {
            "requests": 1,
            "settled": 1,
            "to_stored_seconds": {"p50": 30.0, "p90": 30.0, "p99": 30.0, "max": 30.0},
            "to_settled_seconds": {"p50": 3570.0, "p90": 3570.0, "p99": 3570.0, "max": 3570.0},
        },
        "sendgrid": {
            "requests": 1,
            "settled": 0,
            "to_stored_seconds": {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0},
            "to_settled_seconds": None,
        },
    }
    # per provider, nearest rank over the confirmed: Mailchimp [60 (a), 270 (b)], SendGrid [60, 3570]
    assert report["by_provider"] == {
        "mailchimp": {
            "requests": 4,
            "settled": 2,
            "to_settled_seconds": {"p50": 60.0, "p90": 270.0, "p99": 270.0, "max": 270.0},
        },
        "sendgrid": {
            "requests": 3,
            "settled": 2,
            "to_settled_seconds": {"p50": 60.0, "p90": 3570.0, "p99": 3570.0, "max": 3570.0},
        },
    }
    # oldest first: e (Wed 11 Nov; 10th business day Wed 25 Nov: past both), then c and d
    # (Tue 24 Nov 13:00: past the 2 days on Thu 26 13:00; 10 business days end Tue 8 Dec)
    unsettled = report["unsettled"]
    assert [(u["email"], u["past"]) for u in unsettled] == [
        ("e@example.com", ["2d", "10bd"]),
        ("c@example.com", ["2d"]),
        ("d@example.com", ["2d"]),
    ]
    assert unsettled[0]["deadlines"] == {"2d": "2026-11-13T12:00:00+00:00", "10bd": "2026-11-26T00:00:00+00:00"}
    assert unsettled[0]["age_seconds"] == 16 * 86400
    assert [(p["provider"], p["state"]) for p in unsettled[0]["providers"]] == [
        ("mailchimp", "dead"),
        ("sendgrid", "dead"),
    ]
    assert unsettled[1]["deadlines"] == {"2d": "2026-11-26T13:00:00+00:00", "10bd": "2026-12-09T00:00:00+00:00"}
    assert report["overdue"] == {"2d": 3, "10bd": 1}

    # the same figures at scrape time
    metrics = hub.metrics.render().decode()
    assert 'optout_requests_overdue{limit="2d"} 3.0' in metrics
    assert 'optout_requests_overdue{limit="10bd"} 1.0' in metrics

    # holidays on Tue 24 and Wed 25 Nov move e's 10th business day to Fri 27: not past yet
    holidays = Limits(frozenset({datetime(2026, 11, 24).date(), datetime(2026, 11, 25).date()}))
    text = io.StringIO()
    with hub.sessions() as session:
        status = write_report(
            session,
            text,
            since=T0 - timedelta(days=1),
            now=clock.now,
            limits=holidays,
            kinds=opt_out_kinds(False),
            fmt="text",
        )
    assert status == 1  # still past the 2 days
    lines = text.getvalue().splitlines()
    assert "Not yet settled at every provider, oldest first: 3 (past 2 days: 3, past 10 business days: 0)" in lines
    assert any(
        line.startswith("oneclick") and line.split()[1:] == ["1", "1", "59m30s", "59m30s", "59m30s", "59m30s"]
        for line in lines
    )
    e_line = next(line for line in lines if "e@example.com" in line)
    assert "2d 2026-11-13 12:00 OVERDUE  10bd 2026-11-28 00:00  e@example.com (global)" in e_line
    assert "age 16d00h" in e_line


def test_nearest_rank_percentiles() -> None:
    assert percentiles([]) is None
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert percentiles([5.0, 1.0, 3.0]) == {"p50": 3.0, "p90": 5.0, "p99": 5.0, "max": 5.0}


def _config_file(tmp_path: Path, database_url: str) -> str:
    path = tmp_path / "optout-hub.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[security]\ntoken_secret_env = "OPTOUT_HUB_SECRET"\n'
        '[providers.sendgrid]\nenabled = true\nwebhook_public_key_env = ""\nbase_url = "http://127.0.0.1:9"\n'
    )
    return str(path)


def test_the_command_exits_1_when_an_opt_out_is_past_a_limit(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    clock: Clock,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"SENDGRID_API_KEY": provider_env_vars()["SENDGRID_API_KEY"]}
    hub = make_hub(make_config({"providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": ""}}}, env=env))
    for name, value in {**env, "OPTOUT_HUB_SECRET": TEST_SECRET, "OPTOUT_HUB_ADMIN_TOKEN": ADMIN_TOKEN}.items():
        monkeypatch.setenv(name, value)
    config = _config_file(tmp_path, database_url)

    assert main(["report", "honour", "--config", config]) == 0  # nothing recorded: nothing late
    assert "oldest first: 0 (past 2 days: 0, past 10 business days: 0)" in capsys.readouterr().out

    clock.now = datetime.now(UTC) - timedelta(days=2, minutes=1)  # pending at SendGrid for 2 days
    hub.record([optout("late@example.com", Source.ONECLICK)])
    assert main(["report", "honour", "--config", config, "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(u["email"], u["past"]) for u in report["unsettled"]] == [("late@example.com", ["2d"])]
    assert report["by_source"]["oneclick"]["requests"] == 1

    assert main(["report", "honour", "--config", config, "--since", "yesterday"]) == 1
    assert capsys.readouterr().err == "error: --since: not an ISO 8601 time: 'yesterday'\n"
