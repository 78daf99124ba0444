"""Polling Constant Contact for the opt-outs made there (README "Constant Contact").

It sends no webhooks, so the worker pulls every ``poll_interval_minutes``: each page's events
are recorded (as ``constant_contact`` events with the provider's time, pushed to the other
providers like any opt-out) in the transaction that stores the page's checkpoint, so a
crashed poll resumes where it stopped and a repeated one stores nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

import requests
from sqlalchemy.orm import Session

from adapters.errors import PayloadError, ProviderAPIError, StoreError
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.providers.client import PushClient
from adapters.providers.pull import Puller, PullPage
from adapters.store.constant_contact import ConstantContactState, note_pull_error, pull_position, save_pull_page
from adapters.store.record import RecordResult, record_events

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PollResult:
    pulled: int = 0
    new: int = 0
    calls: int = 0


def poll_due(hub: Hub, puller: Puller) -> PollResult | None:
    """Poll when the interval has passed since the last poll (or one is unfinished); ``None``
    when not due. A failure is logged and kept for ``/admin``; the next interval retries."""
    minutes = hub.config.providers.constant_contact.poll_interval_minutes
    if minutes <= 0:
        return None
    now = hub.clock()
    with hub.sessions() as session:
        position = pull_position(session)
    if position.checkpoint is None and position.finished_at and now < position.finished_at + timedelta(minutes=minutes):
        return None
    try:
        return poll(hub, puller)
    except (ProviderAPIError, StoreError, PayloadError) as exc:  # an answer it could not read too
        log.warning("constant_contact poll failed: %s", exc)
        try:
            with hub.sessions.begin() as session:
                note_pull_error(session, str(exc), hub.clock())
        except Exception:  # the database is what failed: the next round will tell
            log.warning("constant_contact poll: could not keep the error")
        return None


def poll(hub: Hub, puller: Puller) -> PollResult:
    """Pull from where the last poll left off, page by page."""
    with hub.sessions() as session:
        position = pull_position(session)
    started = position.started_at if position.checkpoint else hub.clock()
    assert started is not None
    result = PollResult()
    for page in puller.pull(since=position.since, checkpoint=position.checkpoint):

        def store(session: Session, page: PullPage = page) -> RecordResult:
            stored = record_events(session, page.events, hub.policy, now=hub.clock())
            save_pull_page(session, started_at=started, checkpoint=page.checkpoint, now=hub.clock())
            return stored

        stored = hub.record_with(store, what="store the Constant Contact poll")
        result.pulled += len(page.events)
        result.new += stored.new
        result.calls += page.calls
    log.info("constant_contact poll: %d opt-outs read, %d new, %d calls", result.pulled, result.new, result.calls)
    return result


def state_for(hub: Hub) -> ConstantContactState | None:
    """Constant Contact's state in the hub's database, when the provider is enabled."""
    cfg = hub.config.providers.constant_contact
    return ConstantContactState(hub.sessions, cfg, clock=hub.clock) if cfg.enabled else None


def clients_for(hub: Hub, http: requests.Session) -> dict[str, PushClient]:
    """Every enabled provider's push client; Constant Contact's keeps its tokens, contact ids
    and budget in the hub's database (one state per process: it paces this process's calls)."""
    return make_clients(hub.config, http, now=hub.clock, cc_state=state_for(hub))
