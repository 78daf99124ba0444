"""Constant Contact in tests: the configuration that points the hub at a
:class:`~tests.support.fake_providers.FakeConstantContact`, and the state it keeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
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
