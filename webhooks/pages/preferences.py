"""``/preferences/<token>``: the preference centre.

The topics from the config with their state, "unsubscribe from everything", an optional
reason (a short list plus free text, stored on the event), and resubscribing. A resubscribe
is recorded as an explicit ``resubscribe`` event whose metadata keeps the wording the person
saw, in their language, and when the page was shown and submitted: the proof of consent.
Forms carry a CSRF token bound to the recipient; no login and no cookie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response, request
from flask_babel import gettext, lazy_gettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.errors import PayloadError
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.store.models import Recipient, Suppression
from adapters.store.recipients import resolve_token
from webhooks.context import current_hub
from webhooks.pages.oneclick import list_title
from webhooks.pages.recording import record_token_request
from webhooks.pages.rendering import current_language, mask_email, page_blueprint, render_page
from webhooks.security import CSRF_FIELD, check_csrf, csrf_token

bp = page_blueprint("preferences", __name__)
REASONS = {
    "too_many": lazy_gettext("Too many emails"),
    "not_relevant": lazy_gettext("The content is not relevant to me"),
    "never_signed_up": lazy_gettext("I never signed up"),
    "other": lazy_gettext("Another reason"),
}
MAX_REASON_TEXT = 500
ACTIONS = ("save", "unsubscribe_all", "resubscribe")
CSRF_LABEL = "page-csrf"


def consent_wording(action: str) -> str:
    """The sentence shown beside a control that subscribes someone again (kept as proof)."""
    if action == "resubscribe":
        return gettext("Yes, I want to receive all these emails again at this address.")
    return gettext("Ticked topics are the emails I agree to receive at this address.")


def suppressed_scopes(session: Session, recipient: Recipient) -> set[str]:
    stmt = select(Suppression.scope).where(
        Suppression.email_key == recipient.email_key, Suppression.suppressed.is_(True)
    )
    return set(session.scalars(stmt))


def _binding(recipient: Recipient) -> str:
    return f"preferences:{recipient.id}"


def _render(token: str, recipient: Recipient, scopes: set[str], *, message: str | None = None) -> Response:
    hub = current_hub()
    topics = [
        {"name": t.name, "title": t.title or t.name, "subscribed": topic_scope(t.name) not in scopes}
        for t in hub.config.topics
    ]
    return render_page(
        "preferences/centre.html",
        token_page=True,
        token=token,
        masked=mask_email(recipient.email),
        list_title=list_title(recipient),
        topics=topics,
        globally_off=GLOBAL_SCOPE in scopes,
        reasons=REASONS,
        consent_topics=consent_wording("save"),
        consent_all=consent_wording("resubscribe"),
        csrf_field=CSRF_FIELD,
        csrf=csrf_token(hub.signer.derive_key(CSRF_LABEL), _binding(recipient), now=hub.clock()),
        message=message,
    )


@bp.get("/preferences/<token>")
def centre(token: str) -> Response:
    hub = current_hub()
    with hub.sessions() as session:
        recipient = resolve_token(session, hub.signer, token)
        scopes = suppressed_scopes(session, recipient)
    return _render(token, recipient, scopes)


def read_reason(form: Any) -> str | None:
    """The stored reason: the chosen code, with the free text after a colon."""
    code = form.get("reason", "")
    text = " ".join(form.get("reason_text", "").split())
    if code and code not in REASONS:
        raise PayloadError("unknown reason")
    if len(text) > MAX_REASON_TEXT:
        raise PayloadError(f"the reason is longer than {MAX_REASON_TEXT} characters")
    if text:
        return f"{code or 'other'}: {text}"
    return code or None


def plan_events(
    recipient: Recipient,
    scopes: set[str],
    action: str,
    wanted: Sequence[str],
    topics: Sequence[str],
    reason: str | None,
    consent: dict[str, Any],
) -> list[OptOutEvent]:
    """The events a submitted form asks for, given the current state (pure)."""

    def event(kind: Kind, scope: str) -> OptOutEvent:
        resub = kind is Kind.RESUBSCRIBE
        return OptOutEvent(
            email=recipient.email,
            kind=kind,
            source=Source.PREFERENCES,
            scope=scope,
            verification=Verification.TOKEN,
            campaign=recipient.campaign or None,
            reason=None if resub else reason,
            metadata={"recipient_id": recipient.id, **({"consent": consent} if resub else {})},
        )

    if action == "unsubscribe_all":
        return [event(Kind.UNSUBSCRIBE, GLOBAL_SCOPE)]
    if action == "resubscribe":
        return [event(Kind.RESUBSCRIBE, GLOBAL_SCOPE)]
    events = []
    for name in topics:
        scope, off = topic_scope(name), topic_scope(name) in scopes
        if name in wanted and off:
            events.append(event(Kind.RESUBSCRIBE, scope))
        elif name not in wanted and not off:
            events.append(event(Kind.UNSUBSCRIBE, scope))
    return events


@bp.post("/preferences/<token>")
def submit(token: str) -> Response:
    hub = current_hub()
    action = request.form.get("action", "")
    if action not in ACTIONS:
        raise PayloadError("unknown action")
    topics = [t.name for t in hub.config.topics]
    wanted = request.form.getlist("topic")
    if any(name not in topics for name in wanted):
        raise PayloadError("unknown topic")
    reason = read_reason(request.form)

    def build(session: Session, recipient: Recipient) -> list[OptOutEvent]:
        shown_at = check_csrf(
            hub.signer.derive_key(CSRF_LABEL), _binding(recipient), request.form.get(CSRF_FIELD), now=hub.clock()
        )
        consent = {
            "wording": consent_wording(action),
            "lang": current_language(),
            "page": "preferences",
            "shown_at": shown_at.isoformat(),
            "submitted_at": hub.clock().isoformat(),
        }
        return plan_events(recipient, suppressed_scopes(session, recipient), action, wanted, topics, reason, consent)

    recipient, events, _ = record_token_request(hub, token, Source.PREFERENCES, build)
    with hub.sessions() as session:
        scopes = suppressed_scopes(session, recipient)
    if not events:
        message = gettext("Nothing has changed.")
    elif action == "resubscribe" or all(e.kind is Kind.RESUBSCRIBE for e in events):
        message = gettext("Welcome back: your choices are saved.")
    else:
        message = gettext("Your choices are saved.")
    return _render(token, recipient, scopes, message=message)
