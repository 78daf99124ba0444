"""``optout-hub report rates`` (adapters/rates_report.py, adapters/cli.py): the date range, and
the tables as text, CSV and JSON, run as a subprocess over the seeded history of
tests/support/rates_history.py, whose numbers are worked out here by hand."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from adapters.config import Config
from adapters.errors import PayloadError
from adapters.hub import Hub
from adapters.rates_report import date_range, to_csv
from adapters.store.rates import RateRow, RateTable
from tests.support.clock import Clock
from tests.support.environment import TEST_SECRET
from tests.support.pages import TOPICS
from tests.support.rates_history import seed_rates_history

TODAY = date(2026, 11, 24)


def test_the_range_defaults_to_the_last_30_days_and_refuses_nonsense() -> None:
    assert date_range(None, None, today=TODAY) == (date(2026, 10, 26), TODAY)
    assert date_range("2026-11-01", None, today=TODAY) == (date(2026, 11, 1), TODAY)
    assert date_range(None, "2026-11-10T23:00:00Z", today=TODAY) == (date(2026, 10, 12), date(2026, 11, 10))
    for since, until, message in (
        ("yesterday", None, "since: not an ISO date"),
        (None, "2026-13-01", "until: not an ISO date"),
        ("2026-11-02", "2026-11-01", "since must not be after until"),
        ("1990-01-01", None, "at most 3660 days"),
    ):
        with pytest.raises(PayloadError, match=message):
            date_range(since, until, today=TODAY)


def test_csv_cells_a_spreadsheet_would_run_are_quoted() -> None:
    rows = [
        RateRow("=HYPERLINK(1)", "=HYPERLINK(1)", 1, "admin"),
        RateRow("other: =1", "Another reason: =1", 1, "person"),
    ]
    assert to_csv(RateTable("reason", TODAY, TODAY, rows)).splitlines()[1:] == [
        "'=HYPERLINK(1),'=HYPERLINK(1),admin,1,",
        "other: =1,Another reason: =1,person,1,",
    ]


@pytest.fixture
def report(
    tmp_path: Path,
    database_url: str,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    clock: Clock,
) -> Callable[..., subprocess.CompletedProcess[str]]:
    seed_rates_history(make_hub(make_config({"topics": TOPICS})), clock)
    config = tmp_path / "optout-hub.toml"
    topics = "".join(f'[[topics]]\nname = "{t["name"]}"\ntitle = "{t["title"]}"\n' for t in TOPICS)
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[security]\ntoken_secret_env = "OPTOUT_HUB_SECRET"\n{topics}'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_HUB")}
    env.update(OPTOUT_HUB_CONFIG=str(config), OPTOUT_HUB_SECRET=TEST_SECRET)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "adapters",
                "report",
                "rates",
                "--since",
                "2026-11-20",
                "--until",
                "2026-11-24",
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def test_report_rates_as_csv_json_and_text(report: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    # campaign autumn: 5 recipients, a and c unsubscribed (40 %), b complained (20 %);
    # ghost: h unsubscribed, no recipients: no rate
    result = report("--by", "campaign", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["code", "recipients", "opt-outs", "rate %", "complaints", "complaint rate %"],
        ["autumn", "5", "2", "40.00", "1", "20.00"],
        ["ghost", "0", "1", "", "0", ""],
    ]
    # topic newsletter: 4 recipients, a left (25 %), z left without receiving it
    result = report("--format", "json")
    tables = json.loads(result.stdout)["tables"]
    assert tables["topic"] == [
        {
            "key": "newsletter",
            "label": "Monthly newsletter",
            "recipients": 4,
            "opt_outs": 1,
            "rate": 0.25,
            "outside": 1,
        },
        {"key": "offers", "label": "Special offers", "recipients": 1, "opt_outs": 0, "rate": 0.0, "outside": 0},
    ]
    assert next((r["key"], r["group"], r["opt_outs"]) for r in tables["source"]) == ("import", "import", 3)
    assert sum(r["opt_outs"] for r in tables["kind"]) == 11
    kinds = list(csv.reader(io.StringIO(report("--by", "kind", "--format", "csv").stdout)))
    assert kinds[0] == ["code", "label", "events", "share %"] and kinds[1] == [
        "unsubscribe",
        "Unsubscribe",
        "8",
        "72.73",
    ]
    text = report().stdout
    assert "by campaign, 2026-11-20 to 2026-11-24" in text
    (ghost,) = [line for line in text.splitlines() if line.startswith("ghost")]
    assert ghost.split() == ["ghost", "0", "1", "—", "0", "—"]
    (person,) = [line for line in text.splitlines() if line.startswith("other: I moved abroad")]
    assert "Another reason: I moved abroad" in person and "person" in person and "16.7%" in person


def test_report_rates_refuses_bad_input_with_one_line(report: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    for args, line in (
        (("--format", "csv"), "error: --format csv prints one table: choose it with --by"),
        (("--until", "2026-11-01"), "error: since must not be after until"),
    ):
        result = report(*args)
        assert (result.returncode, result.stderr.strip()) == (1, line)
    assert report("--by", "weather").returncode == 2
