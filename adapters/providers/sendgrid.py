"""SendGrid: webhook events in (verify, parse) and opt-outs pushed back out (API client).

The inbound section is pure (bytes in, events out) and ends with ``WEBHOOK``, the spec the
HTTP side serves (:mod:`adapters.providers.webhook`); the push-back section talks HTTP
through an injected `requests.Session`.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from urllib.parse import quote

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.addresses import address_key
from adapters.config import Config, Topic
from adapters.errors import ConfigError, PayloadError, ProviderAPIError, SignatureError
from adapters.events import GLOBAL_SCOPE, Actor, Kind, OptOutEvent, Source, Verification, scope_topic, topic_scope
from adapters.providers import payloads
from adapters.providers.client import APIClient, Outcome, PushResult, bearer_api, push_each
from adapters.providers.webhook import OptOuts, WebhookRequest, WebhookSpec

# --- inbound: webhook verification and parsing ----------------------------------------------

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
KEY_SETTING = "providers.sendgrid.webhook_public_key_env"

# SendGrid event name -> our kind; every other event type is skipped without reading further.
EVENT_KINDS = {
    "unsubscribe": Kind.UNSUBSCRIBE,
    "group_unsubscribe": Kind.UNSUBSCRIBE,
    "group_resubscribe": Kind.RESUBSCRIBE,
    "spamreport": Kind.COMPLAINT,
    "bounce": Kind.BOUNCE,
}
GROUP_EVENTS = frozenset({"group_unsubscribe", "group_resubscribe"})


@functools.lru_cache(maxsize=8)
def load_public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    """The P-256 key from its base64 DER SubjectPublicKeyInfo (the value SendGrid shows)."""
    try:
        key = serialization.load_der_public_key(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise ConfigError(KEY_SETTING, "not a base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ConfigError(KEY_SETTING, "not a P-256 (secp256r1) public key")
    return key


def verify_signature(
    body: bytes, headers: Mapping[str, str], *, public_key: str, now: datetime, max_age_seconds: int = 0
) -> None:
    """Check the Signed Event Webhook signature over ``timestamp + body`` (the raw bytes).

    A missing header, bad base64, bad DER, a wrong signature and (with ``max_age_seconds``) a
    timestamp too far from ``now`` all raise the same :class:`SignatureError`.
    """
    signature = payloads.header(headers, SIGNATURE_HEADER)
    timestamp = payloads.header(headers, TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise SignatureError("SendGrid signature or timestamp header missing")
    try:
        load_public_key(public_key).verify(
            base64.b64decode(signature, validate=True), timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256())
        )
    except (binascii.Error, UnicodeEncodeError, ValueError, InvalidSignature):
        raise SignatureError(f"SendGrid signature does not verify (check {KEY_SETTING})") from None
    if max_age_seconds:
        stamp = payloads.digits(timestamp)
        if stamp is None or abs(int(now.timestamp()) - stamp) > max_age_seconds:
            raise SignatureError("SendGrid signature timestamp is outside the allowed age")


def parse_events(
    body: bytes,
    content_type: str,
    *,
    topics: Sequence[Topic],
    received_at: datetime,
    verification: Verification = Verification.SIGNATURE,
) -> list[OptOutEvent]:
    """The opt-out events in an Event Webhook body (a JSON array); other event types are skipped.

    ``group_*`` events are scoped to the topic whose ``sendgrid_group`` is the event's
    ``asm_group_id``. When no topic maps the group, its unsubscribe is global (the safe side)
    and its resubscribe is skipped. A ``bounce`` of type ``blocked`` is a temporary refusal,
    not a bounce.
    """
    items = payloads.json_array(body, content_type)
    groups = {t.sendgrid_group: topic_scope(t.name) for t in topics if t.sendgrid_group is not None}
    times: dict[object, datetime | None] = {}  # a batch repeats few distinct timestamps
    events = []
    for i, item in enumerate(items):
        name = item.get("event")
        if not isinstance(name, str):
            raise PayloadError(f"events[{i}].event: missing or not a string")
        kind = EVENT_KINDS.get(name)
        if kind is None or (kind is Kind.BOUNCE and item.get("type", "bounce") != "bounce"):
            continue
        try:
            event = _event(item, name, kind, groups, times, received_at, verification)
        except PayloadError as exc:
            raise PayloadError(f"events[{i}].{exc}") from None
        if event.kind is Kind.RESUBSCRIBE and event.scope == GLOBAL_SCOPE:
            continue  # rejoining a group no topic maps must not lift a global opt-out
        events.append(event)
    return events


def _event(
    item: dict[str, object],
    name: str,
    kind: Kind,
    groups: Mapping[int, str],
    times: dict[object, datetime | None],
    received_at: datetime,
    verification: Verification,
) -> OptOutEvent:
    """One opt-out event; errors name the field, the caller adds the event's index."""
    stamp = item.get("timestamp")
    occurred_at = times.get(stamp) if type(stamp) is int else None
    if occurred_at is None:
        occurred_at = payloads.epoch(stamp, "timestamp")
        if type(stamp) is int:
            times[stamp] = occurred_at
    metadata: dict[str, object] | None = None
    scope = GLOBAL_SCOPE
    if name in GROUP_EVENTS:
        group = _group_id(item.get("asm_group_id"), "asm_group_id")
        scope = groups.get(group, GLOBAL_SCOPE)
        metadata = {"asm_group_id": group}  # kept: an unmapped group became a global opt-out
        if kind is Kind.RESUBSCRIBE:
            metadata["actor"] = Actor.PERSON.value  # the person, on SendGrid's preference page
    event_id = payloads.text(item.get("sg_event_id"), "sg_event_id", max_chars=200)
    reason = item.get("reason")
    return OptOutEvent(
        email=payloads.address(item.get("email"), "email"),
        kind=kind,
        source=Source.SENDGRID,
        scope=scope,
        verification=verification,
        provider_event_id=event_id,
        occurred_at=occurred_at,
        received_at=received_at,
        reason=reason if isinstance(reason, str) and reason else None,
        metadata=metadata,
    )


def _group_id(value: object, where: str) -> int:
    if isinstance(value, str) and (number := payloads.digits(value)) is not None:
        return number
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 10**payloads.MAX_DIGITS:
        raise PayloadError(f"{where}: missing or not an integer of at most {payloads.MAX_DIGITS} digits")
    return value


def read_webhook(request: WebhookRequest, config: Config, now: datetime) -> OptOuts:
    """A delivery, verified on its exact bytes when a public key is configured (else its
    events are stored as unverified)."""
    cfg = config.providers.sendgrid
    verification = Verification.NONE
    if cfg.webhook_public_key is not None:
        verify_signature(
            request.body,
            request.headers,
            public_key=cfg.webhook_public_key.reveal(),
            now=now,
            max_age_seconds=cfg.max_timestamp_age_seconds,
        )
        verification = Verification.SIGNATURE
    return OptOuts(
        parse_events(
            request.body, request.content_type, topics=config.topics, received_at=now, verification=verification
        )
    )


def check_config(config: Config) -> None:
    """A configured public key that cannot be loaded stops start-up rather than failing every
    delivery."""
    key = config.providers.sendgrid.webhook_public_key
    if key is not None:
        load_public_key(key.reveal())


WEBHOOK = WebhookSpec(
    read=read_webhook,
    refusal_status=403,
    refusal_message="invalid signature",
    evidence_headers=("User-Agent", TIMESTAMP_HEADER),
    check_config=check_config,
    signature_headers=(SIGNATURE_HEADER, TIMESTAMP_HEADER),
)

# --- push-back: API client ------------------------------------------------------------------

DEFAULT_BASE_URL = "https://api.sendgrid.com"
REQUIRED_SCOPES = ("asm.suppressions.global.create", "asm.groups.suppressions.create")


def _rate_limit_reset(resp: requests.Response, body: object, now: datetime) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (unix time), SendGrid's answer to "when again"."""
    try:
        return max(float(resp.headers["X-RateLimit-Reset"]) - now.timestamp(), 0.0)
    except (KeyError, ValueError):
        return None


class SendGridClient:
    """Adds addresses to the global suppression list, or to a topic's unsubscribe group.

    Both calls take many ``recipient_emails`` and answer 201 even for an address already
    suppressed. A resubscribe deletes the address's suppression, one address per call.
    """

    slug = "sendgrid"

    def __init__(self, api: APIClient, *, topic_groups: Mapping[str, int], batch_size: int) -> None:
        self.api = api
        self.topic_groups = dict(topic_groups)
        self.batch_size = batch_size

    def _suppressions_path(self, scope: str) -> str | None:
        topic = scope_topic(scope)
        if topic is None:
            return "/v3/asm/suppressions/global"
        group = self.topic_groups.get(topic)
        return None if group is None else f"/v3/asm/groups/{group}/suppressions"

    def push(self, scope: str, action: str, emails: Sequence[str]) -> dict[str, PushResult]:
        path = self._suppressions_path(scope)
        if path is None:
            return {address_key(e): PushResult(Outcome.DONE, None, "no SendGrid group for this scope") for e in emails}
        if action == "resubscribe":
            return push_each(emails, lambda address: self._delete(f"{path}/{quote(address, safe='@')}"))
        status, _ = self.api.request("POST", path, json_body={"recipient_emails": list(emails)})
        return {address_key(e): PushResult(Outcome.DONE, status) for e in emails}

    def _delete(self, path: str) -> PushResult:
        try:
            status, _ = self.api.request("DELETE", path)
        except ProviderAPIError as exc:
            if exc.status == 404:
                return PushResult(Outcome.DONE, 404, "not suppressed")
            raise
        return PushResult(Outcome.DONE, status)

    def check(self) -> str:
        _, body = self.api.request("GET", "/v3/scopes")
        granted = set((body or {}).get("scopes") or ())
        missing = [s for s in REQUIRED_SCOPES if s not in granted]
        if missing:
            raise ProviderAPIError("sendgrid", f"the API key lacks the scopes {', '.join(missing)}")
        groups = []
        for group in dict.fromkeys(self.topic_groups.values()):
            try:
                _, info = self.api.request("GET", f"/v3/asm/groups/{group}")
            except ProviderAPIError as exc:
                if exc.status == 404:
                    raise ProviderAPIError(
                        "sendgrid",
                        f"unsubscribe group {group} does not exist: its opt-outs would land on the global list",
                        status=404,
                    ) from None
                raise
            groups.append(f"{group} ({(info or {}).get('name', '?')})")
        return "scopes ok; groups: " + (", ".join(groups) or "none configured")


def make_client(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> SendGridClient:
    cfg = config.providers.sendgrid
    api = bearer_api(
        "sendgrid",
        http,
        cfg.api_key,
        setting="providers.sendgrid.api_key_env",
        what="API key",
        base_url=cfg.base_url or DEFAULT_BASE_URL,
        timeout=cfg.timeout_seconds,
        now=now,
        retry_hint=_rate_limit_reset,
    )
    groups = {t.name: t.sendgrid_group for t in config.topics if t.sendgrid_group is not None}
    return SendGridClient(api, topic_groups=groups, batch_size=cfg.batch_size)
