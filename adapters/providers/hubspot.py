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
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from adapters.addresses import address_key
from adapters.config import Config, Secret
from adapters.errors import PayloadError, ProviderAPIError, SignatureError
from adapters.events import GLOBAL_SCOPE, Actor, Kind, OptOutEvent, Source, Verification, scope_topic, topic_scope
from adapters.providers import payloads
from adapters.providers.client import APIClient, Outcome, PushResult, Throttle, answer_key, bearer_api, push_each
from adapters.providers.pull import (
    PullAPI,
    PullPage,
    decode_checkpoint,
    encode_checkpoint,
    iso_time,
    pull_event_id,
    pulled_address,
)
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
# changeSource -> who changed hs_email_optout (README "Consent"). HubSpot documents the field as
# "any of the change sources that appear in contact property histories" (a long enum: FORM,
# EMAIL, CRM_UI, CRM_UI_BULK_ACTION, IMPORT, API, INTEGRATION, WORKFLOWS, AUTOMATION_PLATFORM,
# MERGE_CONTACTS…) without defining each. Only the contact's own form submission (FORM: since
# October 2024 a form tied to a subscription type resubscribes whoever submits it) or action
# from a HubSpot email's subscription links (EMAIL; an inference: the docs do not say so) is the
# person; a user's click, bulk action, merge, import or mobile app is staff; the API,
# integrations, workflows and anything unlisted are automation.
PERSON_SOURCES = frozenset({"FORM", "EMAIL"})
STAFF_SOURCES = frozenset(
    {"CRM_UI", "CRM_UI_BULK_ACTION", "CRM", "IMPORT", "MERGE_CONTACTS", "SALES", "MOBILE_IOS", "MOBILE_ANDROID"}
)


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

    def push(
        self, scope: str, action: str, emails: Sequence[str], *, held: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, PushResult]:
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
                return push_each(emails, self._unsubscribe_all_one, concurrency=self.api.throttle.concurrency)
            return self._unsubscribe_all(emails)
        subscription = self.topic_subscriptions.get(topic)
        if subscription is None:
            return {
                address_key(e): PushResult(Outcome.DONE, None, "no HubSpot subscription for this scope") for e in emails
            }
        return push_each(
            emails,
            lambda address: self._set_subscription(address, subscription, action),
            concurrency=self.api.throttle.concurrency,
        )

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


def _api(config: Config, http: requests.Session, now: Callable[[], datetime]) -> APIClient:
    cfg = config.providers.hubspot
    return bearer_api(
        "hubspot",
        http,
        cfg.access_token,
        setting="providers.hubspot.access_token_env",
        what="access token",
        base_url=cfg.base_url or DEFAULT_BASE_URL,
        timeout=cfg.timeout_seconds,
        now=now,
        retry_hint=_policy_wait,
        throttle=Throttle(cfg.max_concurrent_requests, now=now, per_window=cfg.requests_per_10_seconds),
    )


def _topic_subscriptions(config: Config) -> dict[str, str]:
    return {t.name: t.hubspot_subscription for t in config.topics if t.hubspot_subscription}


def make_client(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> HubSpotClient:
    cfg = config.providers.hubspot
    return HubSpotClient(
        _api(config, http, now),
        subscription_ids=cfg.subscription_ids,
        topic_subscriptions=_topic_subscriptions(config),
        batch_size=cfg.batch_size,
        batch=cfg.batch_unsubscribe_all,
    )


# --- pull: contacts search, confirmed by the v4 status reads (README "Reconciliation") ------

SEARCH_PATH = "/crm/v3/objects/contacts/search"
STATUS_READ_PATH = "/communication-preferences/v4/statuses/batch/read"
WIDE_READ_PATH = "/communication-preferences/v4/statuses/batch/unsubscribe-all/read"
SEARCH_PAGE = 200  # the search API's maximum limit
SEARCH_CAP = 10_000  # results one query may page through; beyond, a new query from the last time
SEARCH_PER_SECOND = 5
SEARCH_WINDOW = 1.05  # a second, and a margin for the two clocks that measure it
STATUS_BATCH = 100
MAX_OPTOUT_GROUPS = 5  # filterGroups per query
OVERLAP = timedelta(minutes=5)  # the search index lags: read a little again
SETTLE = timedelta(minutes=1)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def search_body(
    properties: Sequence[str], *, after: int, since_ms: int | None, until_ms: int, changed_only: bool
) -> dict[str, Any]:
    """A contacts search, oldest change first, in the window [since, until): every contact
    changed there (``changed_only``), else those whose opt-out ``properties`` are true."""
    window = [{"propertyName": "lastmodifieddate", "operator": "LT", "value": str(until_ms)}]
    if since_ms is not None:
        window.append({"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(since_ms)})
    groups = (
        [{"filters": window}]
        if changed_only
        else [{"filters": [{"propertyName": p, "operator": "EQ", "value": "true"}, *window]} for p in properties]
    )
    return {
        "filterGroups": groups,
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["email", "lastmodifieddate", *properties],
        "limit": SEARCH_PAGE,
        "after": str(after),
    }


def parse_search(body: object) -> tuple[list[str], int | None, int | None]:
    """A search page: the contacts' addresses, ``paging.next.after`` (``None`` on the last
    page) and the last contact's ``lastmodifieddate`` in epoch ms."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise PayloadError("search: results missing")
    emails, last = [], None
    for result in body["results"]:
        props = result.get("properties") if isinstance(result, dict) else None
        if not isinstance(props, dict):
            continue
        changed = iso_time(props.get("lastmodifieddate"))
        last = _ms(changed) if changed is not None else last
        if props.get("email") and (email := pulled_address(props["email"], PROVIDER)) is not None:
            emails.append(email)
    after = ((body.get("paging") or {}).get("next") or {}).get("after")
    return emails, payloads.digits(after) if isinstance(after, str) else None, last


def parse_statuses(
    statuses: object, wide: object, *, scopes: Mapping[str, str], received_at: datetime
) -> tuple[list[OptOutEvent], dict[str, list[str]]]:
    """The v4 batch reads: "unsubscribed from all" is a global opt-out, ``UNSUBSCRIBED`` from a
    topic's subscription that topic's; ``SUBSCRIBED`` there is mailable (scope -> addresses)."""
    events: list[OptOutEvent] = []
    mailable: dict[str, list[str]] = {}

    def event(email: str, scope: str, what: str, stamp: object) -> OptOutEvent:
        return OptOutEvent(
            email=email,
            kind=Kind.UNSUBSCRIBE,
            source=Source.HUBSPOT,
            scope=scope,
            verification=Verification.PULL,
            provider_event_id=pull_event_id("hs-pull", what, email.lower(), stamp),
            occurred_at=iso_time(stamp),
            received_at=received_at,
            reason=OPTOUT_PROPERTY if scope == GLOBAL_SCOPE else f"{OPTOUT_PROPERTY}_{what}",
        )

    for result in _results(wide):
        email = pulled_address(result.get("subscriberIdString"), PROVIDER)
        for status in result.get("wideStatuses") or []:
            if (
                email
                and isinstance(status, dict)
                and status.get("status") == "UNSUBSCRIBED"
                and status.get("wideStatusType", "PORTAL_WIDE") == "PORTAL_WIDE"
            ):
                events.append(event(email, GLOBAL_SCOPE, "all", status.get("timestamp")))
    for result in _results(statuses):
        email = pulled_address(result.get("subscriberIdString"), PROVIDER)
        for status in result.get("statuses") or []:
            if not email or not isinstance(status, dict):
                continue
            subscription = str(status.get("subscriptionId"))
            scope = scopes.get(subscription)
            if scope is None:
                continue
            if status.get("status") == "UNSUBSCRIBED":
                events.append(event(email, scope, subscription, status.get("timestamp")))
            elif status.get("status") == "SUBSCRIBED":
                mailable.setdefault(scope, []).append(email)
    return events, mailable


def _results(body: object) -> list[dict[str, Any]]:
    """The ``results`` of a v4 batch answer (a 207 holds them beside its ``errors``)."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise PayloadError("status read: results missing")
    return [r for r in body["results"] if isinstance(r, dict)]


class HubSpotPuller:
    """HubSpot lists no opt-outs since a time: search contacts sorted by ``lastmodifieddate``
    (every contact changed since ``since``; for a backfill, those with an opt-out property
    true), at most five searches a second, a new query from the last time seen before the
    10,000-result cap; then confirm each page's addresses with the v4 status reads. Addresses
    without a contact cannot be found this way (README "Reconciliation")."""

    slug = "hubspot"

    def __init__(
        self,
        api: PullAPI,
        *,
        scopes: Mapping[str, str],
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.scopes = dict(scopes)  # subscription id -> topic scope
        self.now = now
        self.monotonic = monotonic
        self._searches: list[float] = []

    def pull(self, *, since: datetime | None, checkpoint: str | None) -> Iterator[PullPage]:
        at = decode_checkpoint(checkpoint)
        until = int(at.get("until") or _ms(self.now() - SETTLE))
        start = at.get("from", _ms(since - OVERLAP) if since is not None else None)
        after = int(at.get("after", 0))
        properties = [OPTOUT_PROPERTY, *(f"{OPTOUT_PROPERTY}_{s}" for s in self.scopes)][:MAX_OPTOUT_GROUPS]
        while True:
            self._pace()
            body = search_body(properties, after=after, since_ms=start, until_ms=until, changed_only=since is not None)
            answer = self.api.request("POST", SEARCH_PATH, json_body=body)
            self._searches.append(self.monotonic())
            emails, next_after, last = parse_search(answer)
            events: list[OptOutEvent] = []
            mailable: dict[str, list[str]] = {}
            for i in range(0, len(emails), STATUS_BATCH):
                chunk = {"inputs": emails[i : i + STATUS_BATCH]}
                params = {"channel": "EMAIL"}
                statuses = self.api.request("POST", STATUS_READ_PATH, json_body=chunk, params=params)
                wide = self.api.request("POST", WIDE_READ_PATH, json_body=chunk, params=params)
                found, open_to = parse_statuses(statuses, wide, scopes=self.scopes, received_at=self.now())
                events += found
                for scope, addresses in open_to.items():
                    mailable.setdefault(scope, []).extend(addresses)
            position = encode_checkpoint(until=until, **{"from": start}, after=after)
            for scope, addresses in mailable.items():  # before the page that moves the checkpoint on
                yield PullPage(events=(), checkpoint=position, calls=0, mailable=addresses, scope=scope)
            if next_after is not None and next_after + SEARCH_PAGE > SEARCH_CAP:
                if last is None or last == start:
                    raise ProviderAPIError(PROVIDER, f"more than {SEARCH_CAP} contacts changed in one millisecond")
                start, next_after = last, 0  # the overlap is read again and stored once
            done = next_after is None
            after = next_after or 0
            yield PullPage(
                events=events,
                checkpoint=None if done else encode_checkpoint(until=until, **{"from": start}, after=after),
                calls=self.api.take_calls(),
            )
            if done:
                return

    def _pace(self) -> None:
        """Wait until a search may go: at most :data:`SEARCH_PER_SECOND` in any second (the
        search API's limit), counted from when each earlier search was answered. That is after
        HubSpot saw it, whatever wait the client's throttle added before sending it, so
        HubSpot never counts one too many."""
        now = self.monotonic()
        self._searches = [t for t in self._searches if now - t < SEARCH_WINDOW]
        if len(self._searches) >= SEARCH_PER_SECOND:
            self.api.sleep(SEARCH_WINDOW - (now - self._searches[0]))


def make_puller(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> HubSpotPuller:
    scopes = {sub: topic_scope(name) for name, sub in _topic_subscriptions(config).items()}
    return HubSpotPuller(PullAPI(_api(config, http, now)), scopes=scopes, now=now)
