"""Constant Contact in tests: the configuration that points the hub at a
:class:`~tests.support.fake_providers.FakeConstantContact`, and the state it keeps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.hub import Hub
from adapters.store.constant_contact import ConstantContactState
from tests.support.fake_providers import CC_CLIENT_ID, CC_CLIENT_SECRET, FakeConstantContact

SECRET_ENV = "CC_CLIENT_SECRET"
REFRESH_ENV = "CC_REFRESH_TOKEN"


def cc_table(fake: FakeConstantContact, **overrides: Any) -> dict[str, Any]:
    """``[providers.constant_contact]`` for the fake."""
    return {
        "enabled": True,
        "client_id": CC_CLIENT_ID,
        "client_secret_env": SECRET_ENV,
        "refresh_token_env": REFRESH_ENV,
        "base_url": fake.url,
        "auth_url": fake.url,
        **overrides,
    }


def cc_env(fake: FakeConstantContact) -> dict[str, str]:
    """The client secret and the first refresh token, as the operator would set them."""
    return {SECRET_ENV: CC_CLIENT_SECRET, REFRESH_ENV: fake.initial_refresh_token}


@contextmanager
def started(now: Callable[[], datetime], **options: Any) -> Iterator[FakeConstantContact]:
    """A fake that fails the test if it got a request the real API would reject."""
    fake = FakeConstantContact(now=now, **options)
    try:
        yield fake
    finally:
        fake.close()
    assert fake.unexpected == [], "the fake Constant Contact got a request the real API would reject"


def state(hub: Hub) -> ConstantContactState:
    return ConstantContactState(hub.sessions, hub.config.providers.constant_contact, clock=hub.clock)


def write_config(
    path: Path, database_url: str, fake: FakeConstantContact, *, sendgrid_url: str | None = None, **cc: object
) -> Path:
    """A TOML file for the CLI and worker processes: Constant Contact at the fake (and
    SendGrid at ``sendgrid_url``), ``cc`` overriding its keys."""
    table = {**cc_table(fake), "poll_interval_minutes": 0, **cc}
    lines = [
        "[database]",
        f'url = "{database_url}"',
        "[security]",
        'token_secret_env = "OPTOUT_HUB_SECRET"',
        "[worker]",
        "collect_window_seconds = 0.0",
        "poll_interval_seconds = 0.05",
        "[providers.constant_contact]",
        *(f"{key} = {json.dumps(value)}" for key, value in table.items()),
    ]
    if sendgrid_url:
        lines += [
            "[providers.sendgrid]",
            "enabled = true",
            f'base_url = "{sendgrid_url}"',
            'webhook_public_key_env = ""',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path
