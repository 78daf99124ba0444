"""Fixtures of the web-page tests: a hub with the pages' topics, served over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from adapters.config import Config
from adapters.hub import Hub
from tests.support.pages import TOPICS
from tests.support.servers import LiveServer
from webhooks import create_app


@pytest.fixture
def topic_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]) -> Hub:
    return make_hub(make_config({"topics": TOPICS}))


@pytest.fixture
def app_url(topic_hub: Hub, serve_app: Callable[[Any], LiveServer]) -> str:
    return serve_app(create_app(hub=topic_hub)).url
