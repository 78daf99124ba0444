"""The consent model (README "Consent"): how events of one address are ordered.

For each address and scope (``global``, ``topic:<name>``) the state is a function of its
events in order of their *effective time*: when the event says it occurred, but never later
than when the hub received it plus :data:`MAX_CLOCK_SKEW` (a sender's clock may run a little
fast; a date beyond that would otherwise outrank every real request until it came round),
then storage order (event id).
"""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_CLOCK_SKEW = timedelta(minutes=5)


def effective_time(occurred_at: datetime, received_at: datetime) -> datetime:
    """The time an event is ordered by: ``occurred_at`` clamped to ``received_at`` + skew."""
    return min(occurred_at, received_at + MAX_CLOCK_SKEW)
