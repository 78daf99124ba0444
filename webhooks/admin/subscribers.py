"""Outbound webhooks on ``/admin`` (README "Change feed and outbound webhooks"): deliveries
per state, the dead ones (a subscriber's answer no retry can fix) with the answer, and a
retry button that queues one again."""

from __future__ import annotations

import dataclasses
import logging

from flask import flash, redirect, url_for
from flask_babel import gettext
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from adapters.errors import PayloadError
from adapters.store.changes import dead_deliveries, delivery_counts, retry_delivery
from adapters.store.models import Change, WebhookDelivery
from webhooks.context import current_hub

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Section:
    counts: dict[str, int]
    dead: list[tuple[WebhookDelivery, Change]]


def section(session: Session, *, configured: bool) -> Section | None:
    """The card's data; ``None`` (no card) when no subscriber is configured and none was."""
    counts = delivery_counts(session)
    if not configured and not counts:
        return None
    return Section(counts, dead_deliveries(session, limit=50))


def retry(delivery: int) -> BaseResponse:
    """``POST /admin/subscribers/<id>/retry`` (session and CSRF checked by the dashboard)."""
    hub = current_hub()
    with hub.sessions.begin() as s:
        if not retry_delivery(s, delivery, now=hub.clock()):
            raise PayloadError(f"delivery {delivery} is not dead")
    log.info("admin: subscriber delivery %d queued again", delivery)
    flash(gettext("Queued again: the worker will push it shortly."))
    return redirect(url_for("admin.home", _anchor="subscribers"), code=303)
