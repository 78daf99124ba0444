"""``/preferences/<token>``: the preference centre.

The topics from the config with their state, "unsubscribe from everything", an optional
reason (a short list plus free text, stored on the event), and resubscribing. A resubscribe
is recorded as an explicit ``resubscribe`` event whose metadata keeps the wording the person
saw, in their language, and when the page was shown and submitted: the proof of consent.
Forms carry a CSRF token bound to the recipient; no login and no cookie.

The form also carries the state it showed (each scope's suppression and the event that set
it), signed with its CSRF token. Saving applies only what the person changed on that page;
a resubscribe whose scope changed since it was shown (say, a one-click opt-out from another
mail) is not applied, and the page is shown again with the current state (README "Consent").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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


ShownState = dict[str, tuple[bool, int]]  # scope -> (suppressed, id of the event that set it)


def scope_states(session: Session, recipient: Recipient) -> ShownState:
    """Every scope of the recipient's address that has a state, with its version."""
    stmt = select(Suppression.scope, Suppression.suppressed, Suppression.event_id).where(
        Suppression.email_key == recipient.email_key
    )
    return {scope: (bool(off), int(event_id)) for scope, off, event_id in session.execute(stmt)}


def suppressed(states: ShownState) -> set[str]:
    return {scope for scope, (off, _) in states.items() if off}


def encode_states(states: ShownState) -> str:
    return ",".join(f"{scope}|{int(off)}|{event_id}" for scope, (off, event_id) in sorted(states.items()))


def decode_states(text: str) -> ShownState:
    states: ShownState = {}
    for item in filter(None, text.split(",")):
        scope, off, event_id = item.split("|")
        states[scope] = (off == "1", int(event_id))
    return states


def _binding(recipient: Recipient, shown: str) -> str:
    return f"preferences:{recipient.id}:{shown}"


def form_token(recipient: Recipient, states: ShownState) -> str:
    """The form's CSRF field: the state shown, then a CSRF token bound to the recipient and it."""
    hub = current_hub()
    shown = encode_states(states)
    return f"{shown}~" + csrf_token(hub.signer.derive_key(CSRF_LABEL), _binding(recipient, shown), now=hub.clock())


def check_form_token(recipient: Recipient, given: str | None) -> tuple[datetime, ShownState]:
    """When the form was shown and the state it showed; :class:`PayloadError` if forged or old."""
    hub = current_hub()
    shown, _, token = (given or "").rpartition("~")
    shown_at = check_csrf(hub.signer.derive_key(CSRF_LABEL), _binding(recipient, shown), token, now=hub.clock())
    return shown_at, decode_states(shown)  # signed by us, so well formed


def _render(token: str, recipient: Recipient, states: ShownState, *, message: str | None = None) -> Response:
    hub = current_hub()
    scopes = suppressed(states)
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
        csrf=form_token(recipient, states),
        message=message,
    )


@bp.get("/preferences/<token>")
def centre(token: str) -> Response:
    hub = current_hub()
    with hub.sessions() as session:
        recipient = resolve_token(session, hub.signer, token)
        states = scope_states(session, recipient)
    return _render(token, recipient, states)


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
    shown: ShownState,
    current: ShownState,
    action: str,
    wanted: Sequence[str],
    topics: Sequence[str],
    reason: str | None,
    consent: dict[str, Any],
) -> tuple[list[OptOutEvent], bool]:
    """The events a submitted form asks for (pure), and whether the state changed since the
    page was shown (then the page is shown again with the current state).

    Only what the person changed on the page counts: a topic ticked that was shown off, or
    unticked that was shown on. A resubscribe of a scope that changed since (or under a global
    state that did) is left out; opting out always counts.
    """

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
        return [event(Kind.UNSUBSCRIBE, GLOBAL_SCOPE)], False
    changed = {scope for scope in shown.keys() | current.keys() if shown.get(scope) != current.get(scope)}
    if action == "resubscribe":
        return ([], True) if changed else ([event(Kind.RESUBSCRIBE, GLOBAL_SCOPE)], False)
    shown_off, now_off = suppressed(shown), suppressed(current)
    events = []
    for name in topics:
        scope = topic_scope(name)
        if name in wanted and scope in shown_off:
            if scope in now_off and not {scope, GLOBAL_SCOPE} & changed:
                events.append(event(Kind.RESUBSCRIBE, scope))
        elif name not in wanted and scope not in shown_off and scope not in now_off:
            events.append(event(Kind.UNSUBSCRIBE, scope))
    return events, bool(changed)


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
    stale = False

    def build(session: Session, recipient: Recipient) -> list[OptOutEvent]:
        nonlocal stale
        shown_at, shown = check_form_token(recipient, request.form.get(CSRF_FIELD))
        consent = {
            "wording": consent_wording(action),
            "lang": current_language(),
            "page": "preferences",
            "shown_at": shown_at.isoformat(),
            "submitted_at": hub.clock().isoformat(),
        }
        events, stale = plan_events(
            recipient, shown, scope_states(session, recipient), action, wanted, topics, reason, consent
        )
        return events

    recipient, events, _ = record_token_request(hub, token, Source.PREFERENCES, build)
    with hub.sessions() as session:
        states = scope_states(session, recipient)
    if stale:
        message = gettext("Your choices changed since this page was shown. Please check them and save again.")
    elif not events:
        message = gettext("Nothing has changed.")
    elif action == "resubscribe" or all(e.kind is Kind.RESUBSCRIBE for e in events):
        message = gettext("Welcome back: your choices are saved.")
    else:
        message = gettext("Your choices are saved.")
    return _render(token, recipient, states, message=message)
