"""Reading the store: bulk checks and export."""

from __future__ import annotations

from datetime import timedelta

from adapters.hub import Hub
from adapters.store import queries
from adapters.store.queries import check_addresses, export_suppressions
from tests.support.store import ev


def test_check_many_addresses_in_chunks(hub: Hub, monkeypatch) -> None:
    monkeypatch.setattr(queries, "CHECK_CHUNK", 7)
    hub.record([ev(f"s{i}@example.com") for i in range(0, 60, 3)])
    emails = [f"S{i}@Example.com" for i in range(60)] + ["bad", "s0@example.com"]
    with hub.sessions() as session:
        result = check_addresses(session, emails)
    assert result.suppressed == [f"S{i}@Example.com" for i in range(0, 60, 3)] + [
        "s0@example.com"
    ]  # as given, in order
    assert result.invalid == ["bad"]


def test_export_since(hub: Hub, clock) -> None:
    t0 = clock()
    hub.record([ev("old@example.com", occurred_at=t0 - timedelta(days=3))])
    hub.record([ev("new@example.com", occurred_at=t0)])
    with hub.sessions() as session:
        assert [r["email"] for r in export_suppressions(session)] == ["old@example.com", "new@example.com"]
        assert [r["email"] for r in export_suppressions(session, since=t0 - timedelta(days=1))] == ["new@example.com"]
