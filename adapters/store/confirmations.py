"""Confirmation mail, queued in the transaction that records the opt-out it confirms.

The worker sends what is queued here (:mod:`adapters.worker.confirmations`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from adapters.config import Config
from adapters.events import Kind, OptOutEvent, Source
from adapters.store.bulk import insert_statement
from adapters.store.models import ConfirmationSend

CONFIRMED_SOURCES = frozenset({Source.SMTP, Source.ONECLICK, Source.PREFERENCES})
PENDING, SENT, DEAD = "pending", "sent", "dead"


def should_confirm(event: OptOutEvent, *, auto_submitted: bool) -> bool:
    """Whether an opt-out deserves a confirmation (before the once-a-day limit)."""
    return event.kind is Kind.UNSUBSCRIBE and event.source in CONFIRMED_SOURCES and not auto_submitted


def queue_confirmation(
    session: Session, config: Config, event: OptOutEvent, *, auto_submitted: bool, now: datetime, lang: str = "en"
) -> bool:
    """Claim today's confirmation for ``event``'s address, in the caller's transaction.

    Call it in the transaction that records the event: the mail is then as durable as the
    opt-out (a crash after the commit, or a relay that is down, delays it, never loses it),
    and the worker sends it (:func:`adapters.worker.confirmations.send_due_confirmations`).
    ``auto_submitted`` is true for requests no person sent: an ``Auto-Submitted`` header other
    than ``no``, a ``Precedence: bulk/junk/list`` header, or a null envelope sender. Returns
    whether one was queued.
    """
    if not config.confirmations.enabled or not should_confirm(event, auto_submitted=auto_submitted):
        return False
    row = {
        "email_key": event.email.lower(),
        "day": now.date().isoformat(),
        "email": event.email,
        "scope": event.scope,
        "campaign": event.campaign,
        "lang": lang,
        "state": PENDING,
        "attempts": 0,
        "queued_at": now,
        "next_attempt_at": now,
    }
    stmt = (
        insert_statement(session, ConfirmationSend)
        .on_conflict_do_nothing(index_elements=["email_key", "day"])
        .returning(ConfirmationSend.id)
    )
    return session.execute(stmt.values(**row)).first() is not None
