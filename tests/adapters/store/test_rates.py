"""Unsubscribe counts and rates (adapters/store/rates.py) over a seeded history whose numbers
are worked out by hand in each test (tests/support/rates_history.py says what happened)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from adapters.config import Config
from adapters.hub import Hub
from adapters.store.rates import RateRow, rate_table
from tests.support.clock import Clock
from tests.support.pages import TOPICS
from tests.support.rates_history import RANGE, seed_rates_history

SINCE, UNTIL = RANGE


@pytest.fixture
def seeded(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], clock: Clock) -> Hub:
    hub = make_hub(make_config({"topics": TOPICS}))
    seed_rates_history(hub, clock)
    return hub


def table(hub: Hub, by: str, since: date = SINCE, until: date = UNTIL) -> list[RateRow]:
    with hub.sessions() as session:
        return rate_table(
            session, by, since=since, until=until, now=hub.clock(), titles={"newsletter": "Monthly newsletter"}
        ).rows


def test_by_source_keeps_imports_apart_and_leaves_out_days_outside_the_range(seeded: Hub) -> None:
    # 10 opt-outs in range: 3 imports, smtp b and k, preferences z and c, api g, mailchimp h,
    # one-click a (d's one-click on 11-10 is outside); a's resubscribe is no opt-out.
    rows = [(r.key, r.group, r.opt_outs, r.share) for r in table(seeded, "source")]
    assert rows == [
        ("import", "import", 3, 3 / 10),
        ("preferences", "organic", 2, 2 / 10),
        ("smtp", "organic", 2, 2 / 10),
        ("api", "organic", 1, 1 / 10),
        ("mailchimp", "organic", 1, 1 / 10),
        ("oneclick", "organic", 1, 1 / 10),
    ]
    assert [r.label for r in table(seeded, "source")][:2] == ["Import", "Preference centre"]
    # the day before a's one-click holds d's alone
    assert [(r.key, r.opt_outs) for r in table(seeded, "source", date(2026, 11, 10), date(2026, 11, 10))] == [
        ("oneclick", 1)
    ]


def test_by_kind_counts_every_event(seeded: Hub) -> None:
    # unsubscribes: a, z, c, 3 imports, g, h = 8; b complains; k bounces; a resubscribes: 11
    rows = [(r.key, r.label, r.opt_outs, r.share) for r in table(seeded, "kind")]
    assert rows == [
        ("unsubscribe", "Unsubscribe", 8, 8 / 11),
        ("bounce", "Bounce", 1, 1 / 11),
        ("complaint", "Spam complaint", 1, 1 / 11),
        ("resubscribe", "Resubscribe", 1, 1 / 11),
    ]


def test_by_reason_lists_peoples_words_apart_from_machine_codes(seeded: Hub) -> None:
    # six opt-outs with a reason; a's one-click and the imports have none
    rows = [(r.group, r.key, r.label, r.opt_outs) for r in table(seeded, "reason")]
    assert rows == [
        ("admin", "asked by phone", "asked by phone", 1),
        ("machine", "bounce: 5.1.1 user unknown (hard)", "Bounce report", 1),
        ("machine", "complaint: ARF abuse report", "Spam complaint report", 1),
        ("machine", "manual", "Unsubscribed at Mailchimp", 1),
        ("person", "other: I moved abroad", "Another reason: I moved abroad", 1),
        ("person", "too_many", "Too many emails", 1),
    ]
    assert {r.share for r in table(seeded, "reason")} == {1 / 6}


def test_topic_rate_is_over_that_topics_own_recipients(seeded: Hub) -> None:
    # newsletter: issued to a, b, c, d; in range only a left it (d left before); z left it
    # without ever receiving it: counted apart, never in the rate. offers: e, who stayed.
    rows = [(r.key, r.label, r.recipients, r.opt_outs, r.rate, r.outside) for r in table(seeded, "topic")]
    assert rows == [
        ("newsletter", "Monthly newsletter", 4, 1, 1 / 4, 1),
        ("offers", "offers", 1, 0, 0.0, 0),
    ]


def test_campaign_rates_and_a_campaign_without_recipients(seeded: Hub) -> None:
    # autumn: issued to a..e (5); a and c unsubscribed, b complained. ghost: h unsubscribed,
    # no token was ever issued for it: no rate ("—"), never 100 %.
    rows = [
        (r.key, r.recipients, r.opt_outs, r.rate, r.complaints, r.complaint_rate) for r in table(seeded, "campaign")
    ]
    assert rows == [("autumn", 5, 2, 2 / 5, 1, 1 / 5), ("ghost", 0, 1, None, 0, None)]


def test_a_range_before_any_recipient_has_no_rates(seeded: Hub) -> None:
    """A configured topic (given a title) is listed even with nothing to count; others only
    when they have recipients or opt-outs."""
    rows = table(seeded, "topic", date(2026, 10, 1), date(2026, 10, 31))
    assert [(r.key, r.recipients, r.opt_outs, r.rate) for r in rows] == [("newsletter", 0, 0, None)]
    assert table(seeded, "campaign", date(2026, 10, 1), date(2026, 10, 31)) == []


def test_unknown_dimension_is_refused(seeded: Hub) -> None:
    with pytest.raises(ValueError, match="by must be one of"):
        table(seeded, "weather")
