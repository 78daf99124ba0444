"""Mailchimp: webhook events in (verify, parse) and opt-outs pushed back out (API client).

The inbound section is pure (bytes in, events out); the push-back section talks HTTP through
an injected `requests.Session`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timezone
from urllib.parse import parse_qsl

from . import payloads
from .config import Secret, Topic
from .errors import PayloadError, SignatureError
from .events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification, topic_scope

# --- inbound: webhook verification and parsing ----------------------------------------------

# (type, data[reason]) -> our kind; a reason of None is the type's default. Types not listed
# (profile, upemail, campaign, anything new) are accepted and produce no opt-out.
EVENT_KINDS = {
    ("unsubscribe", "abuse"): Kind.COMPLAINT,
    ("unsubscribe", None): Kind.UNSUBSCRIBE,
    ("cleaned", "abuse"): Kind.COMPLAINT,
    ("cleaned", None): Kind.BOUNCE,
    ("subscribe", None): Kind.RESUBSCRIBE,
}
FIRED_AT_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_FIELDS = 200


def verify_secret(given: str, *, secret: Secret | None) -> None:
    """Mailchimp signs nothing: the webhook URL carries a long random secret, compared in
    constant time. No configured secret refuses every request."""
    if secret is None or not hmac.compare_digest(given.encode(), secret.reveal().encode()):
        raise SignatureError("unknown Mailchimp webhook URL")


def parse_events(body: bytes, content_type: str, *, topics: Sequence[Topic], lists: Sequence[str], received_at: datetime) -> list[OptOutEvent]:
    """The opt-out in one form-encoded webhook delivery (at most one event).

    ``unsubscribe`` and ``subscribe`` are scoped to the topic mapped to ``data[list_id]``; an
    unmapped list's unsubscribe is global, its subscribe is ignored (it may be an import).
    A POST without ``type`` (Mailchimp's URL check) has no event. ``lists`` and the topics'
    lists are the audiences this hub serves; an event from any other is refused.
    """
    if not body.strip():
        return []
    payloads.require_content_type(content_type, "application/x-www-form-urlencoded")
    fields: dict[str, str] = {}
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"body is not a valid form: {exc}") from None
    for key, value in pairs:
        fields.setdefault(key, value)  # a repeated key keeps its first value
    kind_name = fields.get("type")
    if not kind_name:
        return []
    reason = fields.get("data[reason]") or None
    kind = EVENT_KINDS.get((kind_name, reason)) or EVENT_KINDS.get((kind_name, None))
    if kind is None or (kind_name == "unsubscribe" and fields.get("data[action]") == "delete"):
        return []  # not an opt-out, or an admin deleting the contact rather than the person asking
    list_id = payloads.text(fields.get("data[list_id]"), "data[list_id]")
    mapped = {t.mailchimp_list: topic_scope(t.name) for t in topics if t.mailchimp_list}
    if (lists or mapped) and list_id not in lists and list_id not in mapped:
        raise PayloadError(f"data[list_id]: audience {list_id!r} is not configured in providers.mailchimp.lists")
    scope = mapped.get(list_id, GLOBAL_SCOPE)
    if kind is Kind.RESUBSCRIBE and scope == GLOBAL_SCOPE:
        return []
    email = payloads.address(fields.get("data[email]"), "data[email]")
    fired_at = fields.get("fired_at", "")
    return [
        OptOutEvent(
            email=email,
            kind=kind,
            source=Source.MAILCHIMP,
            scope=scope,
            verification=Verification.TOKEN,  # the secret URL is a bearer token
            provider_event_id=event_key(kind_name, fired_at, list_id, email.lower(), fields.get("data[action]", ""), reason or ""),
            occurred_at=_fired_at(fired_at),
            received_at=received_at,
            reason=reason,
            campaign=fields.get("data[campaign_id]") or None,
            metadata={"type": kind_name, "list_id": list_id, "action": fields.get("data[action]")},
        )
    ]


def event_key(*parts: str) -> str:
    """Mailchimp sends no event id: a hash of the fields a retry repeats stands in for one."""
    return "mc:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def _fired_at(value: str) -> datetime | None:
    """``fired_at`` is ``YYYY-MM-DD HH:MM:SS`` with no zone; Mailchimp means UTC."""
    if not value:
        return None
    try:
        return datetime.strptime(value, FIRED_AT_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise PayloadError(f"fired_at: expected YYYY-MM-DD HH:MM:SS, not {value!r}") from None



# --- push-back: API client ------------------------------------------------------------------
