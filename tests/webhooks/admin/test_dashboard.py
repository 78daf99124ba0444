"""What the dashboard reads that needs no server (the page itself: test_admin.py)."""

from __future__ import annotations

from adapters.events import Source
from webhooks.admin.dashboard import SOURCE_COLOURS


def test_every_source_has_its_own_bar_colour() -> None:
    """A source added to :class:`Source` (a new provider) shows in the chart with no edit here."""
    assert list(SOURCE_COLOURS) == list(Source)
    assert len(set(SOURCE_COLOURS.values())) == len(Source)
