"""The app factory: behind ``[http] trusted_proxy_hops`` reverse proxies, the client address
kept as evidence is the one the proxy saw; with none trusted, a forged header is ignored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from adapters.config import Config
from adapters.hub import Hub
from adapters.store.models import Evidence
from tests.support.pages import events, issue_token
from tests.support.servers import LiveServer
from webhooks import create_app


@pytest.mark.parametrize(("hops", "recorded"), [(1, "203.0.113.9"), (0, "127.0.0.1")])
def test_the_evidence_keeps_the_address_the_trusted_proxy_saw(
    hops: int,
    recorded: str,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], LiveServer],
) -> None:
    hub = make_hub(make_config({"http": {"trusted_proxy_hops": hops}}))
    server = serve_app(create_app(hub=hub))
    token = issue_token(hub, "ann@example.com")
    response = requests.post(
        f"{server.url}/u/{token}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": "203.0.113.9"},
        timeout=10,
    )
    assert response.status_code == 200
    [event] = events(hub)
    with hub.sessions() as session:
        assert session.get(Evidence, event.evidence_id).meta["remote_addr"] == recorded  # type: ignore[union-attr]
