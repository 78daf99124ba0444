"""Outbound webhooks: each consent change POSTed, signed, to the ``[[subscribers]]`` that want it.

Deliveries are queued by :func:`adapters.store.changes.record_changes` with their change.
The worker claims due ones under a lease (:func:`adapters.store.leases.claim_due`) and POSTs
one JSON body per change (``{"type": "consent.changed", "timestamp", "data"}``, ``data`` as in
the change feed), signed by :mod:`adapters.standard_webhooks`. The subscriber's answer decides,
as for provider pushes (README "Push-back to providers"): 2xx ``done``; a time-out, a failed
connection, 5xx or 429 ``pending`` again after the worker's back-off (never before
``Retry-After``); any other answer (redirects are not followed) ``dead``, listed on
``/admin`` with a retry button. Delivery is at least once: a worker that dies after the POST
and before settling leaves the row to be sent again when its lease runs out, with the same
``webhook-id``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from sqlalchemy import select

from adapters.config import Subscriber
from adapters.hub import Hub
from adapters.providers.client import parse_retry_after
from adapters.standard_webhooks import signed_headers
from adapters.store.changes import change_document, settle_delivery
from adapters.store.leases import claim_due
from adapters.store.models import Change, WebhookDelivery

log = logging.getLogger(__name__)

CLAIM = 100  # deliveries per claim
ERROR_CHARS = 500  # of a subscriber's answer kept for /admin
_RESULTS = {"done": "done", "pending": "retry", "dead": "dead"}  # as optout_push counts


@dataclasses.dataclass
class Deliveries:
    done: int = 0
    retried: int = 0
    dead: int = 0


@dataclasses.dataclass(frozen=True)
class Attempt:
    state: str  # done | pending | dead
    status: int | None
    detail: str | None
    retry_after: float | None = None


def message(change: Change) -> bytes:
    """The body delivered for ``change``: the same bytes on every attempt."""
    data = change_document(change)
    document = {"type": "consent.changed", "timestamp": data["recorded_at"], "data": data}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def deliver_due(hub: Hub, http: requests.Session, *, backoff: Callable[[int, float | None], float]) -> Deliveries:
    """Claim and deliver every due delivery, ``CLAIM`` at a time; ``backoff(attempts,
    retry_after)`` gives the seconds before a failed one is tried again.

    A subscriber that failed transiently (down, slow, 5xx, 429) is not called again in this
    run: its other due deliveries are put back with the same answer and wait, so one receiver
    that times out costs the worker one time-out per run, not one per change, and never holds
    up the provider pushes for long."""
    subscribers = {s.url: s for s in hub.config.subscribers}
    failing: dict[str, Attempt] = {}  # subscriber URL -> its transient failure in this run
    tally = Deliveries()
    while True:
        now = hub.clock()
        with hub.sessions.begin() as session:
            claimed = claim_due(
                session,
                WebhookDelivery,
                WebhookDelivery.state == "pending",
                now=now,
                until=now + timedelta(seconds=hub.config.worker.lease_seconds),
                limit=CLAIM,
            )
            for row in claimed:
                row.attempts += 1
            jobs = [(row.id, row.subscriber, row.attempts, row.change_id) for row in claimed]
            found = session.scalars(select(Change).where(Change.seq.in_([j[3] for j in jobs])))
            changes = {c.seq: c for c in found}
        if not jobs:
            return tally
        for delivery_id, url, attempts, change_id in jobs:
            sub = subscribers.get(url)
            if sub is None:
                attempt = Attempt("dead", None, "this subscriber is no longer configured")
            elif url in failing:
                attempt = failing[url]
            else:
                attempt = _post(http, sub, f"msg_{delivery_id}", message(changes[change_id]), hub)
                if attempt.state == "pending":
                    failing[url] = attempt
            now = hub.clock()
            due = now
            if attempt.state == "pending":
                due = now + timedelta(seconds=backoff(attempts, attempt.retry_after))
                tally.retried += 1
            elif attempt.state == "dead":
                tally.dead += 1
            else:
                tally.done += 1
            with hub.sessions.begin() as session:
                settle_delivery(
                    session, delivery_id, attempt.state, due=due, now=now, status=attempt.status, error=attempt.detail
                )
            hub.metrics.deliveries.labels(_RESULTS[attempt.state]).inc()
            log.info(  # the host only: a receiver's URL may carry a secret
                "subscriber delivery %d to %s: %s (status %s)",
                delivery_id,
                urlsplit(url).hostname,
                attempt.state,
                attempt.status or "-",
            )


def _post(http: requests.Session, sub: Subscriber, msg_id: str, body: bytes, hub: Hub) -> Attempt:
    secret = sub.secret.reveal() if sub.secret else ""  # set: checked when the configuration was loaded
    headers = signed_headers(secret, msg_id, body, now=hub.clock())
    try:
        resp = http.post(sub.url, data=body, headers=headers, timeout=sub.timeout_seconds, allow_redirects=False)
    except requests.Timeout:
        return Attempt("pending", None, "timed out")
    except requests.RequestException as exc:
        return Attempt("pending", None, f"connection failed ({exc.__class__.__name__})")
    detail = resp.text[:ERROR_CHARS] or None
    if 200 <= resp.status_code < 300:
        return Attempt("done", resp.status_code, None)
    if resp.status_code == 429 or resp.status_code >= 500:
        wait = parse_retry_after(resp.headers.get("Retry-After"), hub.clock())
        return Attempt("pending", resp.status_code, detail, wait)
    return Attempt("dead", resp.status_code, detail)
