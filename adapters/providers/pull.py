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

A list that can only be read whole (a SendGrid unsubscribe group) comes as a page with a
:class:`Snapshot`: the caller keeps the last one and diffs, so an addition is an opt-out and a
removal an unproven resubscribe (README "Consent"). :class:`PullAPI` is the HTTP side every
puller shares: it counts calls, waits out 429s and retries 5xx a few times.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from adapters.errors import PayloadError, ProviderAPIError
from adapters.events import GLOBAL_SCOPE, OptOutEvent
from adapters.providers import payloads
from adapters.providers.client import APIClient

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6  # a call that still fails after these ends the pull; the next one resumes
MAX_WAIT_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Every address a provider list holds now (``name`` is stable across pulls, e.g.
    ``group:1234``), representing ``scope`` in the hub."""

    name: str
    scope: str
    emails: Sequence[str]


@dataclasses.dataclass(frozen=True)
class PullPage:
    """One page of a pull.

    ``checkpoint`` is opaque to the caller: passed back to :meth:`Puller.pull` it resumes after
    this page; ``None`` means this page ended the pull. ``calls`` counts the HTTP calls made for
    the page, for the reconcile report and the provider's budget. ``mailable`` are at
    ``scope``. With a ``snapshot``, ``events`` hold an opt-out for each of its addresses, and the
    caller keeps those it had not seen in the last snapshot.
    """

    events: Sequence[OptOutEvent]
    checkpoint: str | None
    calls: int
    mailable: Sequence[str] = ()
    scope: str = GLOBAL_SCOPE
    snapshot: Snapshot | None = None


class Puller(Protocol):
    """One provider's read-back API."""

    slug: str

    def pull(self, *, since: datetime | None, checkpoint: str | None) -> Iterator[PullPage]:
        """Pages of opt-outs, complaints and bounces changed since ``since`` (all of them when
        ``None``: the backfill), resuming after ``checkpoint`` when given."""
        ...


class PullAPI:
    """A provider's :class:`APIClient` for pulls: counts the calls made, and retries what a
    pull may retry (429 after its ``Retry-After`` or the provider's own hint, else a doubling
    wait; 5xx and time-outs the same) up to :data:`MAX_ATTEMPTS` before giving up with the
    provider's error. ``sleep`` is injected for tests."""

    def __init__(self, api: APIClient, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.sleep = sleep
        self.calls = 0

    def take_calls(self) -> int:
        """Calls made since the last time this was asked (one page's worth)."""
        calls, self.calls = self.calls, 0
        return calls

    def request(self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        """The parsed body of a 2xx answer."""
        for attempt in range(MAX_ATTEMPTS):
            self.calls += 1
            try:
                return self.api.request(method, path, json_body=json_body, params=params)[1]
            except ProviderAPIError as exc:
                if not exc.retryable or attempt == MAX_ATTEMPTS - 1:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else 2.0**attempt * 0.5
                log.info("%s pull: %s; again in %.1f s", self.api.provider, exc, wait)
                self.sleep(min(wait, MAX_WAIT_SECONDS))
        raise AssertionError("unreachable")  # pragma: no cover


def pull_event_id(prefix: str, *parts: object) -> str:
    """A pulled record's ``provider_event_id``: the same record read again gets the same id
    (so a repeated pull stores nothing twice), within the column's 200 characters."""
    return f"{prefix}:" + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:40]


def pulled_address(value: Any, provider: str) -> str | None:
    """The normalized address of a pulled record, or ``None`` (logged, skipped) when the
    provider holds something that is not one: one odd record never stops a pull."""
    try:
        return payloads.address(value, "email")
    except PayloadError as exc:
        log.warning("%s pull: record skipped: %s", provider, exc)
        return None


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time from a provider (``Z`` or an offset; naive means UTC), else ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def encode_checkpoint(**fields: Any) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def decode_checkpoint(checkpoint: str | None) -> dict[str, Any]:
    """The fields of a checkpoint this provider wrote ({} for none, or one it cannot read)."""
    if not checkpoint:
        return {}
    try:
        fields = json.loads(checkpoint)
    except ValueError:
        return {}
    return fields if isinstance(fields, dict) else {}
