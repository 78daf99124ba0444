"""Provider webhooks (README "Provider webhooks"): one view serves every provider's
:class:`~adapters.providers.webhook.WebhookSpec`, from one blueprint per registered provider
at ``/webhooks/<slug>`` plus the spec's URL rule.

The pipeline is fixed: off (404) unless the provider is enabled → the spec's URL check → its
``read`` verifies (a :class:`SignatureError` is answered with the spec's refusal) and parses
(a :class:`PayloadError` is a 400 and nothing is stored) → the raw delivery as evidence and
its events (or, for contact ids, its pending lookups) in ONE transaction → 200. A database
failure is a 503, so the provider retries. A delivery with no opt-out in it (SendGrid opens,
Mailchimp profile updates) is answered 200 without touching the database. Every answer is
counted in ``webhook_requests``.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

from flask import Blueprint, Flask, Response, jsonify, request
from sqlalchemy.orm import Session

from adapters.errors import PayloadError, SignatureError
from adapters.hub import Hub
from adapters.providers import PROVIDER_MODULES, payloads
from adapters.providers.webhook import ContactLookups, Delivery, WebhookRequest, WebhookSpec
from adapters.storable import storable_text
from adapters.store.lookups import queue_lookups
from adapters.store.models import Evidence
from adapters.store.record import RecordResult, record_events
from webhooks.context import current_hub
from webhooks.errors import error_response

log = logging.getLogger(__name__)


def init_app(app: Flask, hub: Hub) -> None:
    """Register a blueprint per provider that has webhooks (one without, such as Constant
    Contact, has no route: 404); an enabled provider's configuration is checked here
    (``check_config``), so a setting that would fail every delivery stops start-up."""
    for slug, module in PROVIDER_MODULES.items():
        spec = module.WEBHOOK
        if spec is None:
            continue
        if spec.check_config is not None and slug in hub.config.providers.enabled():
            spec.check_config(hub.config)
        app.register_blueprint(_blueprint(slug, spec))


def _blueprint(slug: str, spec: WebhookSpec) -> Blueprint:
    """A provider's blueprint: off unless enabled, its own answer to a failed check, the
    request counter, and :func:`receive` at the spec's URL rule."""
    bp = Blueprint(f"{slug}_webhook", __name__, url_prefix=f"/webhooks/{slug}")

    @bp.before_request
    def _enabled() -> Response | None:
        if slug not in current_hub().config.providers.enabled():
            return error_response(404, f"{slug} webhooks are not enabled")
        return None

    @bp.errorhandler(SignatureError)
    def _refused(exc: SignatureError) -> Response:
        log.warning("%s webhook refused from %s: %s", slug, request.remote_addr, exc)
        return error_response(spec.refusal_status, spec.refusal_message)

    @bp.errorhandler(PayloadError)
    def _malformed(exc: PayloadError) -> Response:
        log.warning("%s webhook with a bad body from %s: %s", slug, request.remote_addr, exc)
        return error_response(400, str(exc))

    @bp.after_request
    def _count(response: Response) -> Response:
        current_hub().metrics.webhook_requests.labels(slug, str(response.status_code)).inc()
        return response

    bp.add_url_rule(
        spec.url.path,
        endpoint=f"{slug}_webhook",
        view_func=functools.partial(receive, slug, spec),
        methods=spec.url.methods,
    )
    return bp


def receive(slug: str, spec: WebhookSpec, **path_args: str) -> Response:
    """The one webhook view: check the URL, read the delivery, store it, answer."""
    hub = current_hub()
    if spec.url.check is not None:
        spec.url.check(path_args, hub.config)
    if request.method == "GET":  # only routed when the spec's URL rule has a GET check
        return jsonify(status="ok")
    now = hub.clock()
    delivery_request = WebhookRequest(
        method=request.method,
        path=request.path,
        query_string=request.query_string.decode("latin-1"),
        headers=dict(request.headers),
        content_type=request.content_type or "",
        body=request.get_data(),
        path_args=path_args,
    )
    delivery = spec.read(delivery_request, hub.config, now)
    result = _store(hub, slug, spec, delivery_request, delivery, now) if delivery.events else None
    if isinstance(delivery, ContactLookups):
        log.info(
            "%s webhook from %s: %d opt-out events queued for lookup", slug, request.remote_addr, len(delivery.events)
        )
        return jsonify(events=len(delivery.events))
    parsed, new = len(delivery.events), result.new if result is not None else 0
    log.info("%s webhook from %s: %d opt-out events, %d new", slug, request.remote_addr, parsed, new)
    return jsonify(events=parsed, stored=new, duplicates=parsed - new)


def _store(
    hub: Hub, slug: str, spec: WebhookSpec, delivery_request: WebhookRequest, delivery: Delivery, now: datetime
) -> RecordResult:
    """Store the raw delivery as evidence with its events, or its pending lookups, in one
    transaction."""
    meta = {"remote_addr": request.remote_addr}
    for name in spec.evidence_headers:
        value = payloads.header(delivery_request.headers, name)
        if value is not None:
            meta[name] = storable_text(value)

    def store(session: Session) -> RecordResult:
        evidence = Evidence(
            channel="webhook",
            source=slug,
            received_at=now,
            content=delivery_request.body,
            content_type=delivery_request.content_type,
            meta=meta,
            state="done",
        )
        if isinstance(delivery, ContactLookups):
            result = record_events(session, (), hub.policy, now=now, evidence=evidence)
            queue_lookups(session, delivery.events, evidence_id=evidence.id, now=now)
            return result
        return record_events(session, delivery.events, hub.policy, now=now, evidence=evidence)

    return hub.record_with(store, what=f"store the {slug} delivery")
