"""Pulling what a provider knows back into the hub (README "Reconciliation").

Webhooks miss things: changes made in a provider's own UI or through its API, deliveries lost
while the hub was down, and the history from before the hub existed. A provider module that
can be read back exposes ``make_puller(config, http, *, now)`` returning a :class:`Puller`.

A pull is a sequence of pages. Each page carries what it found as that provider's own
:class:`~adapters.events.OptOutEvent` values (``verification = Verification.PULL``, the
provider's time in ``occurred_at``, a stable ``provider_event_id`` so a repeated pull stores
nothing twice), the addresses the provider reported as mailable where its API says so (to find
drift: the hub holds an opt-out the provider does not), and a checkpoint to resume from after a
crash. The caller stores each page's events and its checkpoint in one transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from adapters.events import OptOutEvent


@dataclasses.dataclass(frozen=True)
class PullPage:
    """One page of a pull.

    ``checkpoint`` is opaque to the caller: passed back to :meth:`Puller.pull` it resumes after
    this page; ``None`` means this page ended the pull. ``calls`` counts the HTTP calls made for
    the page, for the reconcile report and the provider's budget.
    """

    events: Sequence[OptOutEvent]
    checkpoint: str | None
    calls: int
    mailable: Sequence[str] = ()


class Puller(Protocol):
    """One provider's read-back API."""

    slug: str

    def pull(self, *, since: datetime | None, checkpoint: str | None) -> Iterator[PullPage]:
        """Pages of opt-outs, complaints and bounces changed since ``since`` (all of them when
        ``None``: the backfill), resuming after ``checkpoint`` when given."""
        ...
