"""Building and reading events in store tests."""

from __future__ import annotations

from typing import Any

from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.queries import address_state


def ev(email: str, kind: Kind = Kind.UNSUBSCRIBE, source: Source = Source.API, **kw: Any) -> OptOutEvent:
    return OptOutEvent(email=email, kind=kind, source=source, **kw)


def state(hub: Hub, email: str) -> dict[str, Any]:
    with hub.sessions() as session:
        return address_state(session, email)
