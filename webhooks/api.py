"""The JSON API for admins and senders, ``/api/v1``, behind an admin's bearer token (the
``Authorization: Bearer`` header, as scripts use for ``/admin``). The token says which admin
calls: a ``[[admins]]`` token records that admin's name on what it adds."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.orm import Session

from adapters.addresses import normalize_address
from adapters.config import MAX_ADMIN_NAME
from adapters.errors import PayloadError
from adapters.events import GLOBAL_SCOPE, Kind, MailCategory, OptOutEvent, Source, Verification, topic_scope
from adapters.providers import payloads
from adapters.storable import storable_text
from adapters.store import changes
from adapters.store.audit import address_history
from adapters.store.erasure import erase_address
from adapters.store.models import Evidence
from adapters.store.queries import address_state, check_addresses
from adapters.store.recipients import RecipientRequest, issue_tokens
from adapters.store.record import RecordResult, record_events
from webhooks.context import current_hub
from webhooks.errors import bearer_refused
from webhooks.security import admin_for_token, bearer_token, token_matches

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_CHECK = 100_000


FEED_ENDPOINT = "api.get_changes"


@bp.before_request
def _authenticate() -> Response | None:
    """Every admin's token opens every route (README "Named admins"); ``[security]
    feed_token_env``'s only the change feed."""
    given = bearer_token(request.headers)
    hub = current_hub()
    g.admin = admin_for_token(given, hub.config.admin_accounts())
    if g.admin is not None:
        return None
    if request.endpoint == FEED_ENDPOINT and token_matches(given, hub.config.security.feed_token):
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
    """A string field, made storable (README "Provider webhooks": text databases refuse)."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise PayloadError(f"{key} must be a string")
    return storable_text(value) if value else None


def _category(value: Any) -> MailCategory:
    try:
        return MailCategory(value if value is not None else MailCategory.MARKETING)
    except ValueError:
        raise PayloadError("category must be marketing or transactional") from None


@bp.get("/suppressions/<path:email>")
def get_suppression(email: str) -> Response:
    hub = current_hub()
    category = _category(request.args.get("category"))
    with hub.sessions() as session:
        return jsonify(address_state(session, email, category=category, policy=hub.policy))


@bp.delete("/subjects/<path:email>")
def erase_subject(email: str) -> Response:
    """Erase an address's personal data (README "Erasure"); idempotent. 409 when it cannot be
    done now (no erasure key, pushes still pending)."""
    hub = current_hub()
    with hub.sessions.begin() as session:
        result = erase_address(session, email, erasure_key=hub.policy.erasure_key, now=hub.clock())
    log.info("api: address erased (%s)", "again" if result.already_erased else "first time")
    return jsonify(result.as_json())


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


@bp.post("/suppressions")
def add_suppression() -> tuple[Response, int]:
    """Add one opt-out by hand (or, with ``"kind": "resubscribe"``, undo one), with a reason.

    A resubscribe lifts an opt-out only with the acting admin's name (README "Consent"): a
    ``[[admins]]`` token is its admin's name, and ``"admin"``, if given, must be that name; the
    shared ``[security] admin_token_env`` token names no one, so the caller gives ``"admin"``.
    Without a name it is stored as a conflict and changes nothing."""
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
    admin = _acting_admin(_optional_str(body, "admin"))
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
        state.update(address_state(session, address.email, policy=hub.policy))
        return result

    result = hub.record_with(store, what="record the suppression")
    log.info("api: %s %s recorded (changed=%d)", kind.value, scope, result.changed)
    return jsonify(stored=bool(result.new), changed=bool(result.changed), state=state), 201


def _acting_admin(claimed: str | None) -> str | None:
    """The admin name recorded on an API event: the token's own admin, else what the caller
    of the shared token says."""
    if claimed is not None and len(claimed) > MAX_ADMIN_NAME:
        raise PayloadError(f"admin: at most {MAX_ADMIN_NAME} characters")
    if g.admin not in current_hub().config.admins:
        return claimed
    if claimed is not None and claimed != g.admin.name:
        raise PayloadError(f"admin: this token is {g.admin.name!r}'s; leave admin out or give that name")
    name: str = g.admin.name
    return name


@bp.post("/suppressions/check")
def check_suppressions() -> Response:
    body = read_json_object()
    emails = body.get("emails")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise PayloadError("emails must be a list of strings")
    if len(emails) > MAX_CHECK:
        raise PayloadError(f"at most {MAX_CHECK} emails per call")
    topic = _optional_str(body, "topic")
    category = _category(body.get("category"))
    hub = current_hub()
    with hub.sessions() as session:
        result = check_addresses(session, emails, topic=topic, category=category, policy=hub.policy)
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
