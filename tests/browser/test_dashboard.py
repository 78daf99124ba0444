"""The dashboard's analytics in a real browser (Debian chromium through Playwright): a date
range, labels in the admin's language, the CSV download, at 1280 px and 375 px wide, in
English and Arabic, over the seeded history of tests/support/rates_history.py. Screenshots go
to test-artifacts/browser/."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page

from adapters.hub import Hub
from tests.support.clock import Clock
from tests.support.environment import ADMIN_TOKEN
from tests.support.rates_history import seed_rates_history

Shot = Callable[[Page, str], Path]
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
# what sticks out of the page, outside the cards that scroll their own wide tables
TOO_WIDE = """() => [...document.querySelectorAll("main *")]
  .filter(e => !e.closest(".card") && e.getBoundingClientRect().right > document.documentElement.clientWidth)
  .map(e => `${e.tagName}#${e.id}`)"""
WORDING = {
    # lang: (Accept-Language, the preference centre's label, the topic rate row, the "People's reasons" heading)
    "en": ("en-GB", "Preference centre", "Monthly newsletter\t4\t1\t25.0%\t1", "People's reasons"),
    "ar": ("ar", "مركز التفضيلات", "Monthly newsletter\t4\t1\t25.0%\t1", "أسباب الأشخاص"),
}


@pytest.mark.parametrize("width", [1280, 375])
@pytest.mark.parametrize("lang", ["en", "ar"])
def test_rates_for_a_date_range_and_their_csv(
    web_hub: Hub, app_url: str, clock: Clock, new_page: Callable[..., Page], shot: Shot, lang: str, width: int
) -> None:
    seed_rates_history(web_hub, clock)
    locale, preferences, newsletter, people = WORDING[lang]
    page = new_page(locale=locale, width=width)
    page.goto(f"{app_url}/admin")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#sign-in")
    page.wait_for_selector("#range")
    # the last 30 days by default: d's opt-out of the 10th is in the newsletter's rate
    assert page.input_value("#since") == "2026-10-26" and page.input_value("#until") == "2026-11-24"
    assert page.inner_text("#rates-topic").splitlines()[1] == "Monthly newsletter\t4\t2\t50.0%\t1"

    page.fill("#since", "2026-11-20")
    page.click("#show-range")
    page.wait_for_url("**since=2026-11-20**")
    assert page.locator("html").get_attribute("dir") == ("rtl" if lang == "ar" else "ltr")
    assert page.inner_text("#rates-topic").splitlines()[1] == newsletter
    assert f"{preferences}\t2\t20.0%" in page.inner_text("#by-source").splitlines()
    assert people in page.inner_text("main")
    assert "ghost\t0\t1\t—\t0\t—" in page.inner_text("#rates-campaign").splitlines()
    assert page.locator("#daily-chart rect").count() == 7 and page.locator("#imports-chart rect").count() == 1
    assert page.evaluate(SIDEWAYS) <= 0, f"the page scrolls sideways: {page.evaluate(TOO_WIDE)}"
    shot(page, "range")

    with page.expect_download() as info:
        page.click("#csv-campaign")
    download = info.value
    assert download.suggested_filename == "optout-rates-campaign-2026-11-20-2026-11-24.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert rows[1:] == [["autumn", "5", "2", "40.00", "1", "20.00"], ["ghost", "0", "1", "", "0", ""]]
    with page.expect_download() as info:
        page.click("#csv-source")
    sources = list(csv.reader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert ["preferences", preferences, "organic", "2", "20.00"] in sources
