"""Browser fixtures: Debian's chromium driven by Playwright, against the real app over HTTP.

Screenshots of every page go to ``test-artifacts/browser/`` at the repository root (ignored
by git), named after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from adapters.config import Config
from adapters.hub import Hub
from tests.support.pages import TOPICS
from tests.support.prerequisites import require_tool
from tests.support.servers import LiveServer
from webhooks import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-gpu",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    chromium = require_tool(CHROMIUM, "apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def web_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]) -> Hub:
    data = {
        "topics": TOPICS,
        "http": {"public_url": "http://127.0.0.1"},
        "providers": {"sendgrid": {"enabled": True, "webhook_public_key_env": ""}},
    }
    return make_hub(make_config(data, env={"SENDGRID_API_KEY": "SG.test-key"}))


@pytest.fixture
def app_url(web_hub: Hub, serve_app: Callable[[Any], LiveServer]) -> str:
    return serve_app(create_app(hub=web_hub)).url


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    contexts: list[BrowserContext] = []

    def make(locale: str = "en-GB", width: int = 1100) -> Page:
        context = browser.new_context(locale=locale, viewport={"width": width, "height": 900}, accept_downloads=True)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Save a full-page screenshot as ``<test name>-<label>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = request.node.name.replace("[", "-").replace("]", "")

    def save(page: Page, label: str) -> Path:
        path = ARTIFACTS / f"{stem}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
