"""Provider webhooks (contract §4): one blueprint per provider, one fixed pipeline.

Every view reads the raw body and headers, then: verify (the adapter's check; a failure is
answered with the provider's status: Mailchimp 404, SendGrid 403, HubSpot 401) → parse (the
adapter's pure ``parse_events``; bad input is a 400 and nothing is stored) → store the raw
delivery as evidence and its events in ONE transaction → 2xx. A database failure is a 503,
so the provider retries. A delivery with no opt-out in it (SendGrid opens, Mailchimp profile
updates) is answered 200 without touching the database.

``PROVIDERS`` is the explicit registry: adding a provider means an adapter module, a
blueprint here and an entry in that mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from flask import Blueprint, Flask, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from adapters.errors import PayloadError, SignatureError, StoreError
from adapters.events import OptOutEvent, Verification
from adapters.hub import Hub
from adapters.providers import hubspot, mailchimp, sendgrid
from adapters.store.lookups import queue_lookups
from adapters.store.models import Evidence
from adapters.store.record import RecordResult, record_events
from webhooks.context import current_hub
from webhooks.errors import error_response

log = logging.getLogger(__name__)

# Headers kept with the evidence: never a signature, a secret or the (secret) Mailchimp path.
EVIDENCE_HEADERS = ("User-Agent", sendgrid.TIMESTAMP_HEADER, hubspot.TIMESTAMP_HEADER)


def _blueprint(slug: str, bad_signature_status: int, bad_signature_message: str) -> Blueprint:
    """A provider's blueprint with the parts every provider shares: off unless enabled, its
    own answer to a failed check, and the request counter."""
    bp = Blueprint(f"{slug}_webhook", __name__, url_prefix=f"/webhooks/{slug}")

    @bp.before_request
    def _enabled() -> Response | None:
        if not getattr(current_hub().config.providers, slug).enabled:
            return error_response(404, f"{slug} webhooks are not enabled")
        return None

    @bp.errorhandler(SignatureError)
    def _refused(exc: SignatureError) -> Response:
        log.warning("%s webhook refused from %s: %s", slug, request.remote_addr, exc)
        return error_response(bad_signature_status, bad_signature_message)

    @bp.errorhandler(PayloadError)
    def _malformed(exc: PayloadError) -> Response:
        log.warning("%s webhook with a bad body from %s: %s", slug, request.remote_addr, exc)
        return error_response(400, str(exc))

    @bp.after_request
    def _count(response: Response) -> Response:
        current_hub().metrics.webhook_requests.labels(slug, str(response.status_code)).inc()
        return response

    return bp


mailchimp_bp = _blueprint("mailchimp", 404, "not found")
sendgrid_bp = _blueprint("sendgrid", 403, "invalid signature")
hubspot_bp = _blueprint("hubspot", 401, "invalid signature")
PROVIDERS: dict[str, Blueprint] = {"mailchimp": mailchimp_bp, "sendgrid": sendgrid_bp, "hubspot": hubspot_bp}


def init_app(app: Flask, hub: Hub) -> None:
    """Register the provider blueprints; a configured SendGrid key that cannot be loaded
    stops start-up here rather than failing every delivery."""
    key = hub.config.providers.sendgrid.webhook_public_key
    if hub.config.providers.sendgrid.enabled and key is not None:
        sendgrid.load_public_key(key.reveal())
    for bp in PROVIDERS.values():
        app.register_blueprint(bp)


def _store_delivery(
    slug: str,
    body: bytes,
    now: datetime,
    events: Sequence[OptOutEvent],
    also: Callable[[Session, int], None] | None = None,
) -> RecordResult:
    """Store the raw delivery and its events (and ``also``'s rows) in one transaction."""
    hub = current_hub()
    meta = {
        "remote_addr": request.remote_addr,
        **{h: request.headers[h] for h in EVIDENCE_HEADERS if h in request.headers},
    }
    try:
        with hub.sessions.begin() as session:
            evidence = Evidence(
                channel="webhook",
                source=slug,
                received_at=now,
                content=body,
                content_type=request.content_type or "",
                meta=meta,
                state="done",
            )
            result = record_events(session, events, hub.policy, now=now, evidence=evidence)
            if also is not None:
                also(session, evidence.id)
    except SQLAlchemyError as exc:
        raise StoreError(f"could not store the {slug} delivery: {exc.__class__.__name__}") from exc
    hub.count_events(result)
    return result


def _answer(slug: str, parsed: int, result: RecordResult | None) -> Response:
    new = result.new if result is not None else 0
    log.info("%s webhook from %s: %d opt-out events, %d new", slug, request.remote_addr, parsed, new)
    return jsonify(events=parsed, stored=new, duplicates=parsed - new)


@mailchimp_bp.route("/<secret>", methods=["GET", "POST"])
def mailchimp_webhook(secret: str) -> Response:
    """GET is Mailchimp's URL check; POST carries one form-encoded event."""
    hub = current_hub()
    config = hub.config.providers.mailchimp
    mailchimp.verify_secret(secret, secret=config.webhook_secret)
    if request.method == "GET":
        return jsonify(status="ok")
    now = hub.clock()
    body = request.get_data()
    events = mailchimp.parse_events(
        body, request.content_type or "", topics=hub.config.topics, lists=config.lists, received_at=now
    )
    return _answer("mailchimp", len(events), _store_delivery("mailchimp", body, now, events) if events else None)


@sendgrid_bp.post("")
def sendgrid_webhook() -> Response:
    """A JSON array of events, verified on the exact raw bytes when a public key is set."""
    hub = current_hub()
    config = hub.config.providers.sendgrid
    now = hub.clock()
    body = request.get_data()
    verification = Verification.NONE
    if config.webhook_public_key is not None:
        sendgrid.verify_signature(
            body,
            request.headers,
            public_key=config.webhook_public_key.reveal(),
            now=now,
            max_age_seconds=config.max_timestamp_age_seconds,
        )
        verification = Verification.SIGNATURE
    events = sendgrid.parse_events(
        body, request.content_type or "", topics=hub.config.topics, received_at=now, verification=verification
    )
    return _answer("sendgrid", len(events), _store_delivery("sendgrid", body, now, events) if events else None)


@hubspot_bp.post("")
def hubspot_webhook() -> Response:
    """A JSON array of contact events; opt-outs wait in ``pending_lookups`` for the worker to
    resolve their contact ids (:func:`adapters.hubspot.resolve_pending_lookups`)."""
    hub = current_hub()
    now = hub.clock()
    body = request.get_data()
    uri = hubspot.signature_uri(hub.config.http.public_url, request.path, request.query_string.decode("latin-1"))
    hubspot.verify_signature(
        body,
        request.headers,
        method=request.method,
        uri=uri,
        secret=hub.config.providers.hubspot.client_secret,
        now=now,
    )
    found = hubspot.parse_events(body, request.content_type or "", received_at=now)
    if found:
        _store_delivery(
            "hubspot",
            body,
            now,
            (),
            lambda session, evidence_id: queue_lookups(session, found, evidence_id=evidence_id, now=now),
        )
    log.info("hubspot webhook from %s: %d opt-out events queued for lookup", request.remote_addr, len(found))
    return jsonify(events=len(found))
