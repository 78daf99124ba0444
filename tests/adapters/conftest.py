"""Fixtures for the adapters tests.

- ``provider_env``: the secrets that enabled providers resolve from (fake keys).
- ``push_config``: a Config with all three providers enabled, pointed at the fake provider
  servers of ``fake_providers``, with one topic mapped at every provider.
- ``fake_providers``: real local HTTP servers that behave like the providers' APIs
  (see ``tests/support/fake_providers.py``); a test fails if one got a request the real API would reject.
- ``make_push_config(fakes, providers=..., worker=..., options=...)``: ``push_config`` with
  options (``options``: extra keys per provider table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.config import Config
from tests.support.fake_providers import FakeProviders, provider_env_vars


@pytest.fixture
def provider_env() -> dict[str, str]:
    return provider_env_vars()


@pytest.fixture
def fake_providers() -> Iterator[FakeProviders]:
    fakes = FakeProviders.start()
    yield fakes
    fakes.close()
    assert fakes.unexpected() == [], "a fake provider got a request the real API would reject"


@pytest.fixture
def make_push_config(make_config: Callable[..., Config], provider_env: dict[str, str]) -> Callable[..., Config]:
    """A Config with the given providers enabled at the fakes' URLs (``None``: the defaults)."""

    def build(
        fakes: FakeProviders | None,
        *,
        providers: tuple[str, ...] = ("mailchimp", "sendgrid", "hubspot"),
        worker: dict[str, Any] | None = None,
        options: dict[str, dict[str, Any]] | None = None,
        **extra: Any,
    ) -> Config:
        data: dict[str, Any] = {
            "providers": {},
            "worker": {"collect_window_seconds": 0.0, "poll_interval_seconds": 0.05, **(worker or {})},
        }
        for slug in providers:
            table: dict[str, Any] = {"enabled": True, "base_url": fakes.url(slug) if fakes else ""}
            table.update(
                {
                    "mailchimp": {"lists": ["list1", "list2"], "webhook_secret_env": ""},
                    "sendgrid": {"webhook_public_key_env": ""},
                    "hubspot": {"subscription_ids": ["5678"], "client_secret_env": ""},
                }[slug]
            )
            table.update((options or {}).get(slug, {}))
            data["providers"][slug] = table
        mapping = {
            "mailchimp": ("mailchimp_list", "list1"),
            "sendgrid": ("sendgrid_group", 1234),
            "hubspot": ("hubspot_subscription", "5678"),
        }
        data["topics"] = [{"name": "newsletter", **dict(mapping[p] for p in providers)}]
        data.update(extra)
        return make_config(data, env=provider_env)

    return build


@pytest.fixture
def push_config(make_push_config: Callable[..., Config], fake_providers: FakeProviders) -> Config:
    return make_push_config(fake_providers)
