"""Fixtures of the inbound tests: an SMTP component (listener, evidence writer, classification
thread) started in-process on a free port and stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.config import Config
from adapters.hub import Hub
from inbound.listener import SMTPComponent


@pytest.fixture
def start_smtp(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]
) -> Iterator[Callable[..., SMTPComponent]]:
    started: list[SMTPComponent] = []

    def start(
        smtp: dict[str, Any] | None = None,
        inbound: dict[str, Any] | None = None,
        topics: list[dict[str, Any]] | None = None,
        hub: Hub | None = None,
    ) -> SMTPComponent:
        if hub is None:
            data: dict[str, Any] = {"smtp": {"port": 0, **(smtp or {})}}
            if inbound:
                data["inbound"] = inbound
            if topics:
                data["topics"] = topics
            hub = make_hub(make_config(data))
        component = SMTPComponent(hub, port=0, dkim_dns=None)
        component.start()
        started.append(component)
        return component

    yield start
    for component in started:
        component.stop()
