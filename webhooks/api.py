"""The JSON API for admins and senders, ``/api/v1``, behind the admin bearer token (the
``Authorization: Bearer`` header, as scripts use for ``/admin``)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session

from adapters.addresses import normalize_address
from adapters.errors import PayloadError
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.providers import payloads
from adapters.store import changes
from adapters.store.audit import address_history
from adapters.store.models import Evidence
from adapters.store.queries import address_state, check_addresses
from adapters.store.recipients import RecipientRequest, issue_tokens
from adapters.store.record import RecordResult, record_events
from webhooks.context import current_hub
from webhooks.errors import bearer_refused
from webhooks.security import bearer_token, is_admin_token

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_CHECK = 100_000


FEED_ENDPOINT = "api.get_changes"


@bp.before_request
def _authenticate() -> Response | None:
    """The admin token opens every route; ``[security] feed_token_env``'s only the change feed."""
    security = current_hub().config.security
    given = bearer_token(request.headers)
    if is_admin_token(given, security.admin_token):
        return None
    if request.endpoint == FEED_ENDPOINT and is_admin_token(given, security.feed_token):
        return None
    return bearer_refused()


def read_json_object() -> dict[str, Any]:
    """The request body as a JSON object, or :class:`PayloadError`."""
    if not request.is_json:
        raise PayloadError("expected Content-Type: application/json")
    body = payloads.json_document(request.get_data())
    if not isinstance(body, dict):
        raise PayloadError("body must be a JSON object")
    return body


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise PayloadError(f"{key} must be a string")
    return value or None


@bp.get("/suppressions/<path:email>")
def get_suppression(email: str) -> Response:
    with current_hub().sessions() as session:
        return jsonify(address_state(session, email))


@bp.get("/changes")
def get_changes() -> Response:
    """Consent changes after the ``after`` cursor, oldest first (README "Change feed and
    outbound webhooks"); ``next`` is the cursor to pass to read on."""
    after_text = request.args.get("after", "")
    after = changes.decode_cursor(after_text) if after_text else 0
    limit = payloads.digits(request.args.get("limit", str(changes.DEFAULT_LIMIT)))
    if limit is None or not 1 <= limit <= changes.MAX_LIMIT:
        raise PayloadError(f"limit: a whole number from 1 to {changes.MAX_LIMIT}")
    with current_hub().sessions() as session:
        page = changes.read_changes(session, after, limit)
    return jsonify(
        changes=[changes.change_document(c) for c in page.changes],
        next=changes.encode_cursor(page.next),
    )


@bp.get("/audit/<path:email>")
def get_audit(email: str) -> Response:
    """The address's full history (README "Compliance"); an address never seen: no events."""
    with current_hub().sessions() as session:
        return jsonify(address_history(session, email))


MAX_ADMIN_NAME = 200


@bp.post("/suppressions")
def add_suppression() -> tuple[Response, int]:
    """Add one opt-out by hand (or, with ``"kind": "resubscribe"``, undo one), with a reason.

    A resubscribe lifts an opt-out only with the acting admin's name in ``"admin"`` (README
    "Consent"); without it, it is stored as a conflict and changes nothing."""
    hub = current_hub()
    body = read_json_object()
    if not isinstance(body.get("email"), str):
        raise PayloadError("email is required")
    reason = _optional_str(body, "reason")
    if reason is None:
        raise PayloadError("reason is required")
    try:
        kind = Kind(body.get("kind", "unsubscribe"))
    except ValueError:
        raise PayloadError("kind must be one of unsubscribe, complaint, bounce, resubscribe") from None
    admin = _optional_str(body, "admin")
    if admin is not None and len(admin) > MAX_ADMIN_NAME:
        raise PayloadError(f"admin: at most {MAX_ADMIN_NAME} characters")
    topic = _optional_str(body, "topic")
    if topic is not None and hub.config.topic(topic) is None:
        raise PayloadError(f"unknown topic {topic!r}")
    address = normalize_address(body["email"])
    scope = topic_scope(topic) if topic else GLOBAL_SCOPE
    now = hub.clock()
    content = request.get_data()
    state: dict[str, Any] = {}  # the address's state after the change, read in the same transaction

    def store(session: Session) -> RecordResult:
        evidence = Evidence(
            channel="api",
            source=Source.API.value,
            received_at=now,
            content=content,
            content_type="application/json",
            meta={"remote_addr": request.remote_addr},
            state="done",
        )
        session.add(evidence)
        session.flush()
        event = OptOutEvent(
            email=address.email,
            kind=kind,
            source=Source.API,
            scope=scope,
            verification=Verification.NONE,
            occurred_at=now,
            received_at=now,
            reason=reason,
            evidence_id=evidence.id,
            metadata={"admin": admin} if admin else None,
        )
        result = record_events(session, [event], hub.policy, now=now)
        state.update(address_state(session, address.email))
        return result

    result = hub.record_with(store, what="record the suppression")
    log.info("api: %s %s recorded (changed=%d)", kind.value, scope, result.changed)
    return jsonify(stored=bool(result.new), changed=bool(result.changed), state=state), 201


@bp.post("/suppressions/check")
def check_suppressions() -> Response:
    body = read_json_object()
    emails = body.get("emails")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise PayloadError("emails must be a list of strings")
    if len(emails) > MAX_CHECK:
        raise PayloadError(f"at most {MAX_CHECK} emails per call")
    topic = _optional_str(body, "topic")
    with current_hub().sessions() as session:
        result = check_addresses(session, emails, topic=topic)
    return jsonify(suppressed=result.suppressed, invalid=result.invalid)


@bp.post("/headers")
def issue_headers() -> Response:
    hub = current_hub()
    body = read_json_object()
    recipients = body.get("recipients")
    if not isinstance(recipients, list):
        raise PayloadError("recipients must be a list")
    requests = []
    for i, item in enumerate(recipients):
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            raise PayloadError(f"recipients[{i}].email is required")
        requests.append(RecipientRequest(item["email"], _optional_str(item, "topic"), _optional_str(item, "campaign")))
    with hub.sessions.begin() as session:
        issued = issue_tokens(session, hub.signer, hub.config, requests, now=hub.clock())
    return jsonify(
        headers=[
            {"email": h.email, "List-Unsubscribe": h.list_unsubscribe, "List-Unsubscribe-Post": h.list_unsubscribe_post}
            for h in issued
        ]
    )
