"""Building and reading events in store tests."""

from __future__ import annotations

from typing import Any

from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.store.compaction import compact_settled
from adapters.store.queries import address_state


def ev(email: str, kind: Kind = Kind.UNSUBSCRIBE, source: Source = Source.API, **kw: Any) -> OptOutEvent:
    return OptOutEvent(email=email, kind=kind, source=source, **kw)


def state(hub: Hub, email: str) -> dict[str, Any]:
    with hub.sessions() as session:
        return address_state(session, email)


def compact_everything(hub: Hub) -> int:
    """Move every push settled by now to ``push_confirmations`` (what the worker does by and
    by); how many moved."""
    with hub.sessions.begin() as session:
        return compact_settled(session, before=hub.clock(), limit=1_000_000)
