"""CSV import: extra columns kept, duplicates and bad rows counted, never a resubscribe."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from adapters.errors import PayloadError
from adapters.events import Kind, Source
from adapters.hub import Hub
from adapters.store.importer import import_csv
from adapters.store.models import Event
from adapters.store.queries import export_suppressions
from tests.support.store import ev, state


def test_import_never_undoes_an_opt_out(hub: Hub, clock) -> None:
    with pytest.raises(PayloadError):
        hub.record([ev("a@example.com", Kind.RESUBSCRIBE, Source.IMPORT)])
    hub.record([ev("kept@example.com", Kind.COMPLAINT, Source.SENDGRID, provider_event_id="x1")])
    summary = import_csv(
        hub, io.StringIO("email,note\nkept@example.com,old list\nnew@example.com,\nnew@example.com,\nbroken,\n")
    )
    assert (summary.imported, summary.duplicates) == (1, 2)
    assert summary.invalid == [(5, "address must contain exactly one @")]
    s = state(hub, "kept@example.com")
    assert s["suppressed"]
    with hub.sessions() as session:
        row = next(r for r in export_suppressions(session) if r["email"] == "kept@example.com")
    assert (row["kind"], row["source"]) == ("complaint", "sendgrid")
    # importing the same file again stores nothing new
    again = import_csv(hub, io.StringIO("email\nkept@example.com\nnew@example.com\n"))
    assert (again.imported, again.duplicates) == (0, 2)
    with hub.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.source == "import")) == 2


def test_import_keeps_extra_columns_and_origin(hub: Hub) -> None:
    import_csv(
        hub, io.StringIO("Email,list,reason\nz@example.com,promo,moved\n"), origin="legacy-esp", kind=Kind.COMPLAINT
    )
    with hub.sessions() as session:
        event = session.scalars(select(Event)).one()
    assert event.meta == {"list": "promo", "reason": "moved", "origin": "legacy-esp"}
    assert (event.kind, event.source) == ("complaint", "import")
    with pytest.raises(PayloadError, match="email"):
        import_csv(hub, io.StringIO("address\nz@example.com\n"))
