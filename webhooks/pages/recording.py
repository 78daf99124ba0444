"""Recording what a recipient asked for on a page: the request as evidence, its events and
the confirmation mail to send, in one transaction (:meth:`~adapters.hub.Hub.record_with`,
which then counts them)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from flask import request
from sqlalchemy.orm import Session

from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.storable import storable_text
from adapters.store.confirmations import queue_confirmation
from adapters.store.models import Evidence, Recipient
from adapters.store.recipients import resolve_token
from adapters.store.record import RecordResult, record_events
from webhooks.pages.rendering import current_language
from webhooks.security import redact_tokens

log = logging.getLogger(__name__)


def record_token_request(
    hub: Hub, token: str, source: Source, build: Callable[[Session, Recipient], Sequence[OptOutEvent]]
) -> tuple[Recipient, list[OptOutEvent], RecordResult]:
    """Resolve ``token``, let ``build`` decide the events, store them with the request.

    ``build`` runs inside the transaction (it may read the current state) and may raise
    :class:`~adapters.errors.PayloadError`; then nothing is stored.
    """
    now = hub.clock()
    body = request.get_data(cache=True)  # read first: the form is then parsed from this copy
    recipient: Recipient | None = None
    events: list[OptOutEvent] = []

    def store(session: Session) -> RecordResult:
        nonlocal recipient, events
        recipient = resolve_token(session, hub.signer, token)
        events = list(build(session, recipient))
        if not events:
            return RecordResult(0, (), 0, 0)
        evidence = Evidence(
            channel="http",
            source=source.value,
            received_at=now,
            content=body,
            content_type=(request.content_type or "")[:120],
            meta={
                "path": redact_tokens(request.path),
                "recipient_id": recipient.id,
                "user_agent": storable_text(request.user_agent.string[:300]),
                "remote_addr": request.remote_addr,
                "lang": current_language(),
            },
            state="done",
            processed_at=now,
        )
        session.add(evidence)
        session.flush()
        events = [e.replace(evidence_id=evidence.id, received_at=now, occurred_at=e.occurred_at or now) for e in events]
        result = record_events(session, events, hub.policy, now=now)
        opt_out = next((e for e in events if e.kind is Kind.UNSUBSCRIBE), None)
        if opt_out is not None:  # the worker mails it; queued with the opt-out, so never lost
            queue_confirmation(session, hub.config, opt_out, auto_submitted=False, now=now, lang=current_language())
        return result

    result = hub.record_with(store, what=f"record the {source.value} request")
    assert recipient is not None  # ``store`` resolved it, or raised
    if events:
        log.info(
            "%s: recipient %d, %d event(s) stored, %d change(s)", source.value, recipient.id, result.new, result.changed
        )
    return recipient, events, result
