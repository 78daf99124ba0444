"""What the ``event_counts`` table must hold, computed from the events themselves (to check
the counts the store keeps as it records)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.store.models import Event


def expected_counts(session: Session) -> Counter[tuple[str, str, str, str]]:
    expected: Counter[tuple[str, str, str, str]] = Counter()
    for e in session.scalars(select(Event)):
        expected[(e.received_at.astimezone(UTC).date().isoformat(), e.source, e.kind, (e.reason or "")[:200])] += 1
    return expected
