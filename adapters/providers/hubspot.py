"""HubSpot: webhook events in (verify, parse) and opt-outs pushed back out (API client).

The inbound section is pure (bytes in, events out) and ends with ``WEBHOOK``, the spec the
HTTP side serves (:mod:`adapters.providers.webhook`); the push-back section talks HTTP
through an injected `requests.Session`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from adapters.addresses import address_key
from adapters.config import Config, Secret
from adapters.errors import PayloadError, ProviderAPIError, SignatureError
from adapters.events import Actor, Kind, scope_topic
from adapters.providers import payloads
from adapters.providers.client import APIClient, Outcome, PushResult, answer_key, bearer_api, push_each
from adapters.providers.webhook import ContactEvent, ContactLookups, WebhookRequest, WebhookSpec

log = logging.getLogger(__name__)

# --- inbound: webhook verification and parsing ----------------------------------------------

SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
SIGNATURE_WINDOW = timedelta(minutes=5)
OPTOUT_PROPERTY = "hs_email_optout"
PROVIDER = "hubspot"
BATCH_READ_PATH = "/crm/v3/objects/contacts/batch/read"
MAX_BATCH_READ = 100

# (subscription type, property, new value) -> our kind; everything else is no opt-out.
EVENT_KINDS: dict[tuple[str, str | None, str | None], Kind] = {
    ("contact.propertyChange", OPTOUT_PROPERTY, "true"): Kind.UNSUBSCRIBE,
    ("contact.propertyChange", OPTOUT_PROPERTY, "false"): Kind.RESUBSCRIBE,
}
# changeSource -> who changed hs_email_optout (README "Consent"). Only the contact's own form
# submission or click in a HubSpot email is the person; a user's click, import or mobile app
# is staff; the API, integrations, workflows and anything unlisted are automation.
PERSON_SOURCES = frozenset({"FORM", "EMAIL"})
STAFF_SOURCES = frozenset({"CRM_UI", "CRM", "IMPORT", "SALES", "MOBILE_IOS", "MOBILE_ANDROID"})


def change_actor(change_source: object) -> Actor:
    """Who made a contact property change, from its ``changeSource``."""
    if change_source in PERSON_SOURCES:
        return Actor.PERSON
    return Actor.STAFF if change_source in STAFF_SOURCES else Actor.AUTOMATION


# HubSpot decodes these in the URI before signing it; the rest of the URI is hashed as sent.
_URI_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def signature_uri(public_url: str, path: str, query: str) -> str:
    """The URI HubSpot signed: our public URL (not the Host seen behind a proxy), the path and
    the query in its original order, with HubSpot's escapes decoded."""
    uri = public_url.rstrip("/") + path + (f"?{query}" if query else "")
    for escaped, char in _URI_DECODE.items():
        uri = uri.replace(escaped, char).replace(escaped.lower(), char)
    return uri


def verify_signature(
    body: bytes, headers: Mapping[str, str], *, method: str, uri: str, secret: Secret | None, now: datetime
) -> None:
    """Check ``X-HubSpot-Signature-v3``: base64 HMAC-SHA256, keyed with the app's client
    secret, of ``method + uri + body + timestamp``, and a timestamp (epoch ms) at most five
    minutes from ``now``. Any failure, or no configured secret, raises :class:`SignatureError`."""
    if secret is None:
        raise SignatureError("no HubSpot client secret configured (providers.hubspot.client_secret_env)")
    signature = payloads.header(headers, SIGNATURE_HEADER)
    timestamp = payloads.header(headers, TIMESTAMP_HEADER) or ""
    stamp_ms = payloads.digits(timestamp)
    if not signature or stamp_ms is None:
        raise SignatureError("HubSpot signature or timestamp header missing")
    age_ms = abs(int(now.timestamp() * 1000) - stamp_ms)  # ints: a 400-digit header cannot overflow
    if age_ms > SIGNATURE_WINDOW.total_seconds() * 1000:
        raise SignatureError("HubSpot request timestamp is outside the 5-minute window")
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    expected = base64.b64encode(hmac.new(secret.reveal().encode(), message, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature.strip().encode()):
        raise SignatureError("HubSpot signature does not verify (check providers.hubspot.client_secret_env)")


def parse_events(body: bytes, content_type: str, *, received_at: datetime) -> list[ContactEvent]:
    """The opt-out changes in a webhook delivery (a JSON array of up to 100 events).

    ``hs_email_optout`` turning ``true`` is a global opt-out, turning ``false`` HubSpot's own
    resubscribe; other events are skipped. ``eventId`` alone is not unique, so the idempotency
    key combines portal, subscription, event, object and time.
    """
    events = []
    for i, item in enumerate(payloads.json_array(body, content_type)):
        where = f"events[{i}]"
        kind_name = item.get("subscriptionType", item.get("eventType"))
        if not isinstance(kind_name, str):
            raise PayloadError(f"{where}.subscriptionType: missing or not a string")
        prop, value = item.get("propertyName"), item.get("propertyValue")
        kind = EVENT_KINDS.get(
            (
                kind_name,
                prop if isinstance(prop, str) else None,
                str(value).lower() if isinstance(value, (str, bool)) else None,
            )
        )
        if kind is None:
            continue
        # ids are numbers of up to 20 digits: 32 characters each keep the key within its column
        object_id = payloads.text(item.get("objectId"), f"{where}.objectId", max_chars=32)
        key = ":".join(
            payloads.text(item.get(f), f"{where}.{f}", max_chars=32)
            for f in ("portalId", "subscriptionId", "eventId", "objectId", "occurredAt")
        )
        events.append(
            ContactEvent(
                object_id=object_id,
                kind=kind,
                provider_event_id=key,
                occurred_at=payloads.epoch(item.get("occurredAt"), f"{where}.occurredAt", scale=1000),
                received_at=received_at,
                reason=OPTOUT_PROPERTY,
                metadata={
                    "object_id": object_id,
                    "portal_id": item.get("portalId"),
                    "change_source": item.get("changeSource"),
                    "actor": change_actor(item.get("changeSource")).value,
                },
            )
        )
    return events


def read_webhook(request: WebhookRequest, config: Config, now: datetime) -> ContactLookups:
    """A delivery, verified against the URI HubSpot called (see :func:`signature_uri`); its
    opt-outs wait for their contacts' addresses."""
    uri = signature_uri(config.http.public_url, request.path, request.query_string)
    verify_signature(
        request.body,
        request.headers,
        method=request.method,
        uri=uri,
        secret=config.providers.hubspot.client_secret,
        now=now,
    )
    return ContactLookups(parse_events(request.body, request.content_type, received_at=now))


WEBHOOK = WebhookSpec(
    read=read_webhook,
    refusal_status=401,
    refusal_message="invalid signature",
    evidence_headers=("User-Agent", TIMESTAMP_HEADER),
    signature_headers=(SIGNATURE_HEADER, TIMESTAMP_HEADER),
)


def read_contact_emails(api: APIClient, ids: Sequence[str]) -> dict[str, str]:
    """Contact id -> email address, by one batch read (at most 100 ids). Contacts that are
    missing (a 207 lists them in ``errors``), or have no address, are absent from the answer."""
    _, body = api.request(
        "POST",
        BATCH_READ_PATH,
        json_body={"properties": ["email"], "propertiesWithHistory": [], "inputs": [{"id": i} for i in ids]},
    )
    try:
        return {
            str(r["id"]): r["properties"]["email"]
            for r in body.get("results", [])
            if (r.get("properties") or {}).get("email")
        }
    except (AttributeError, KeyError, TypeError):
        raise ProviderAPIError(PROVIDER, "contacts batch read answered an unexpected body") from None


# --- push-back: API client ------------------------------------------------------------------

DEFAULT_BASE_URL = "https://api.hubapi.com"
UNSUBSCRIBE_ALL_PATH = "/communication-preferences/v4/statuses/batch/unsubscribe-all"
LEGAL_BASIS = {"legalBasis": "LEGITIMATE_INTEREST_CLIENT"}
_POLICY_WAIT = {"TEN_SECONDLY_ROLLING": 10.0, "SECONDLY": 1.0}


def _policy_wait(resp: requests.Response, body: Any, now: datetime) -> float | None:
    """The wait a 429's ``policyName`` implies: the ten-second window, or until the next UTC day."""
    policy = body.get("policyName") if isinstance(body, dict) else None
    if policy == "DAILY":
        tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return (tomorrow - now).total_seconds()
    return _POLICY_WAIT.get(policy or "")


class HubSpotClient:
    """Unsubscribes from all email in batches (v4 ``unsubscribe-all``; with ``batch=False``, for
    portals without the batch scope, one call per address), or from one topic's subscription
    type (v3, one call per address, as the API has no batch form).

    A global resubscribe is not pushed: HubSpot offers no undo for "unsubscribed from all".
    """

    slug = "hubspot"

    def __init__(
        self,
        api: APIClient,
        *,
        subscription_ids: Sequence[str],
        topic_subscriptions: Mapping[str, str],
        batch_size: int,
        batch: bool = True,
    ) -> None:
        self.api = api
        self.subscription_ids = tuple(subscription_ids)
        self.topic_subscriptions = dict(topic_subscriptions)
        self.batch_size = min(batch_size, 100)
        self.batch = batch

    def push(self, scope: str, action: str, emails: Sequence[str]) -> dict[str, PushResult]:
        topic = scope_topic(scope)
        if topic is None:
            if action == "resubscribe":
                dead = PushResult(
                    Outcome.DEAD,
                    None,
                    "HubSpot has no API to undo unsubscribe-from-all: resubscribe the contact in HubSpot",
                )
                return {address_key(e): dead for e in emails}
            if not self.batch:
                return push_each(emails, self._unsubscribe_all_one)
            return self._unsubscribe_all(emails)
        subscription = self.topic_subscriptions.get(topic)
        if subscription is None:
            return {
                address_key(e): PushResult(Outcome.DONE, None, "no HubSpot subscription for this scope") for e in emails
            }
        return push_each(emails, lambda address: self._set_subscription(address, subscription, action))

    def _unsubscribe_all(self, emails: Sequence[str]) -> dict[str, PushResult]:
        status, body = self.api.request(
            "POST", UNSUBSCRIBE_ALL_PATH, params={"channel": "EMAIL"}, json_body={"inputs": list(emails)}
        )
        body = body if isinstance(body, dict) else {}
        answered = {answer_key(r.get("subscriberIdString")) for r in body.get("results") or [] if isinstance(r, dict)}
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        results = {}
        for address in emails:
            key = address_key(address)
            if key in answered:  # includes NO_STATUS_CHANGE: already unsubscribed
                results[key] = PushResult(Outcome.DONE, status)
                continue
            error = next((e for e in errors if key in json.dumps(e).lower()), None)
            if error is None:  # neither a result nor an error: ask again later
                results[key] = PushResult(Outcome.RETRY, status, "HubSpot's answer has no result for this address")
            else:
                results[key] = PushResult(Outcome.DEAD, status, str(error.get("message") or error)[:500])
        return results

    def _unsubscribe_all_one(self, address: str) -> PushResult:
        status, _ = self.api.request(
            "POST",
            f"/communication-preferences/v4/statuses/{quote(address, safe='@')}/unsubscribe-all",
            params={"channel": "EMAIL"},
        )
        return PushResult(Outcome.DONE, status)

    def _set_subscription(self, address: str, subscription: str, action: str) -> PushResult:
        verb = "unsubscribe" if action == "unsubscribe" else "subscribe"
        body = {
            "emailAddress": address,
            "subscriptionId": subscription,
            **LEGAL_BASIS,
            "legalBasisExplanation": f"The recipient asked to {verb}",
        }
        try:
            status, _ = self.api.request("POST", f"/communication-preferences/v3/{verb}", json_body=body)
        except ProviderAPIError as exc:
            if f"is already {verb}d" in f"{exc} {exc.body}":
                return PushResult(Outcome.DONE, exc.status, f"already {verb}d")
            raise
        return PushResult(Outcome.DONE, status)

    def check(self) -> str:
        _, body = self.api.request("GET", "/communication-preferences/v3/definitions")
        defined = {
            str(d.get("id")): d.get("name", "?")
            for d in (body or {}).get("subscriptionDefinitions") or []
            if isinstance(d, dict)
        }
        wanted = dict.fromkeys(self.subscription_ids + tuple(self.topic_subscriptions.values()))
        missing = [s for s in wanted if s not in defined]
        if missing:
            raise ProviderAPIError("hubspot", f"subscription types not found in this portal: {', '.join(missing)}")
        names = ", ".join(f"{s} ({defined[s]})" for s in wanted) or "none configured"
        path = "batch (needs communication_preferences.statuses.batch.write)" if self.batch else "one call per address"
        return f"token ok; subscriptions: {names}; unsubscribe-all: {path}; write scopes are proven only by a push"


def make_client(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> HubSpotClient:
    cfg = config.providers.hubspot
    api = bearer_api(
        "hubspot",
        http,
        cfg.access_token,
        setting="providers.hubspot.access_token_env",
        what="access token",
        base_url=cfg.base_url or DEFAULT_BASE_URL,
        timeout=cfg.timeout_seconds,
        now=now,
        retry_hint=_policy_wait,
    )
    subscriptions = {t.name: t.hubspot_subscription for t in config.topics if t.hubspot_subscription}
    return HubSpotClient(
        api,
        subscription_ids=cfg.subscription_ids,
        topic_subscriptions=subscriptions,
        batch_size=cfg.batch_size,
        batch=cfg.batch_unsubscribe_all,
    )
