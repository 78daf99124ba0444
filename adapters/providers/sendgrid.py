"""SendGrid: webhook events in (verify, parse) and opt-outs pushed back out (API client).

The inbound section is pure (bytes in, events out) and ends with ``WEBHOOK``, the spec the
HTTP side serves (:mod:`adapters.providers.webhook`); the push-back section talks HTTP
through an injected `requests.Session`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from urllib.parse import quote

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.addresses import address_key
from adapters.config import Config, Topic, sendgrid_marketing_groups
from adapters.errors import ConfigError, PayloadError, ProviderAPIError, SignatureError
from adapters.events import GLOBAL_SCOPE, Actor, Kind, OptOutEvent, Source, Verification, scope_topic, topic_scope
from adapters.providers import payloads
from adapters.providers.client import APIClient, Outcome, PushResult, Throttle, bearer_api, push_each
from adapters.providers.pull import (
    PullAPI,
    PullPage,
    Snapshot,
    decode_checkpoint,
    encode_checkpoint,
    pull_event_id,
    pulled_address,
)
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
    With ``global_groups`` (``global_opt_out = "groups"``) a global opt-out goes to each of
    those unsubscribe groups instead of the global list, so transactional mail (sent without
    a group) still reaches the person; a global resubscribe deletes it from each of them.
    """

    slug = "sendgrid"

    def __init__(
        self,
        api: APIClient,
        *,
        topic_groups: Mapping[str, int],
        batch_size: int,
        global_groups: Sequence[int] | None = None,
    ) -> None:
        self.api = api
        self.topic_groups = dict(topic_groups)
        self.batch_size = batch_size
        self.global_groups = tuple(global_groups) if global_groups is not None else None

    def _suppressions_paths(self, scope: str) -> list[str]:
        topic = scope_topic(scope)
        if topic is None and self.global_groups is None:
            return ["/v3/asm/suppressions/global"]
        groups = (
            self.global_groups if topic is None else [self.topic_groups[topic]] if topic in self.topic_groups else []
        )
        return [f"/v3/asm/groups/{group}/suppressions" for group in groups or ()]

    def push(
        self, scope: str, action: str, emails: Sequence[str], *, held: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, PushResult]:
        """``held``: per address, the topic scopes still opted out; a global resubscribe in
        ``groups`` mode leaves their groups' suppressions in place."""
        paths = self._suppressions_paths(scope)
        if not paths:
            return {address_key(e): PushResult(Outcome.DONE, None, "no SendGrid group for this scope") for e in emails}
        if action == "resubscribe":
            held = held or {}
            return push_each(
                emails,
                lambda address: self._delete_from(self._unheld(paths, held.get(address_key(address), ())), address),
                concurrency=self.api.throttle.concurrency,
            )
        for path in paths:  # one batch call per group; a failure retries them all (201 when already there)
            status, _ = self.api.request("POST", path, json_body={"recipient_emails": list(emails)})
        return {address_key(e): PushResult(Outcome.DONE, status) for e in emails}

    def _unheld(self, paths: Sequence[str], scopes: Collection[str]) -> list[str]:
        """``paths`` without the groups that must keep the address while ``scopes`` are opted
        out: each topic's group, and in ``groups`` mode every group of the global opt-out."""
        groups = {self.topic_groups[t] for s in scopes if (t := scope_topic(s)) in self.topic_groups}
        if GLOBAL_SCOPE in scopes and self.global_groups is not None:
            groups.update(self.global_groups)
        held = {f"/v3/asm/groups/{group}/suppressions" for group in groups}
        return [path for path in paths if path not in held]

    def _delete_from(self, paths: Sequence[str], address: str) -> PushResult:
        result = PushResult(Outcome.DONE, None)
        for path in paths:
            result = self._delete(f"{path}/{quote(address, safe='@')}")
        return result

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
        for group in dict.fromkeys((*self.topic_groups.values(), *(self.global_groups or ()))):
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


def _api(config: Config, http: requests.Session, now: Callable[[], datetime]) -> APIClient:
    cfg = config.providers.sendgrid
    return bearer_api(
        "sendgrid",
        http,
        cfg.api_key,
        setting="providers.sendgrid.api_key_env",
        what="API key",
        base_url=cfg.base_url or DEFAULT_BASE_URL,
        timeout=cfg.timeout_seconds,
        now=now,
        retry_hint=_rate_limit_reset,
        throttle=Throttle(cfg.max_concurrent_requests, now=now),
    )


def _topic_groups(config: Config) -> dict[str, int]:
    return {t.name: t.sendgrid_group for t in config.topics if t.sendgrid_group is not None}


def make_client(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> SendGridClient:
    cfg = config.providers.sendgrid
    global_groups = sendgrid_marketing_groups(config) if cfg.global_opt_out == "groups" else None
    return SendGridClient(
        _api(config, http, now),
        topic_groups=_topic_groups(config),
        batch_size=cfg.batch_size,
        global_groups=global_groups,
    )


# --- pull: suppression lists by creation time, groups by snapshot (README "Reconciliation") --

# The time-filtered lists that are about consent: global unsubscribes and spam reports opt out;
# bounces are kept as bounces (they opt out only under [inbound] suppress_hard_bounces). Blocks
# and invalid addresses are deliverability problems, not anyone's request.
PULL_LISTS = {"unsubscribes": Kind.UNSUBSCRIBE, "spam_reports": Kind.COMPLAINT, "bounces": Kind.BOUNCE}
PAGE_SIZE = 500  # the API's maximum limit
OVERLAP = timedelta(minutes=5)  # start_time = since - 5 min: late-written records are read again
SETTLE = timedelta(minutes=1)


def parse_suppressions(body: object, *, kind_name: str, received_at: datetime) -> list[OptOutEvent]:
    """One page of ``GET /v3/suppression/{kind}`` (a JSON array) as global events."""
    if not isinstance(body, list):
        raise PayloadError(f"{kind_name}: expected a JSON array")
    kind = PULL_LISTS[kind_name]
    events = []
    for item in body:
        if not isinstance(item, dict):
            continue
        email = pulled_address(item.get("email"), "sendgrid")
        if email is None:
            continue
        created = item.get("created")
        reason = item.get("reason")
        events.append(
            OptOutEvent(
                email=email,
                kind=kind,
                source=Source.SENDGRID,
                verification=Verification.PULL,
                provider_event_id=pull_event_id("sg-pull", kind_name, email.lower(), created),
                occurred_at=payloads.epoch(created, "created") if type(created) is int else None,
                received_at=received_at,
                reason=reason if isinstance(reason, str) and reason else None,
                metadata={"list": kind_name},
            )
        )
    return events


def parse_group(body: object, *, group: int, scope: str, received_at: datetime) -> PullPage:
    """``GET /v3/asm/groups/{id}/suppressions`` (an array of addresses): the group's snapshot,
    with an opt-out at ``scope`` for each address (the caller keeps the new ones)."""
    if not isinstance(body, list):
        raise PayloadError(f"group {group}: expected a JSON array")
    emails = [e for e in (pulled_address(v, "sendgrid") for v in body) if e is not None]
    events = [
        OptOutEvent(
            email=email,
            kind=Kind.UNSUBSCRIBE,
            source=Source.SENDGRID,
            scope=scope,
            verification=Verification.PULL,
            provider_event_id=pull_event_id("sg-group", group, email.lower()),
            occurred_at=received_at,
            received_at=received_at,
            metadata={"asm_group_id": group},
        )
        for email in emails
    ]
    return PullPage(events=events, checkpoint=None, calls=0, snapshot=Snapshot(f"group:{group}", scope, emails))


class SendGridPuller:
    """Reads the global unsubscribes, spam reports and bounces created in the window
    (``start_time`` = since − 5 min, ``end_time`` frozen at the pull's start), page by page
    until a short page, then each topic's unsubscribe group whole (no time filter exists)."""

    slug = "sendgrid"

    def __init__(self, api: PullAPI, *, groups: Mapping[int, str], now: Callable[[], datetime]) -> None:
        self.api = api
        self.groups = dict(groups)  # group id -> scope
        self.now = now

    def pull(self, *, since: datetime | None, checkpoint: str | None) -> Iterator[PullPage]:
        at = decode_checkpoint(checkpoint)
        until = int(at.get("until") or (self.now() - SETTLE).timestamp())
        steps: list[str | int] = [*PULL_LISTS, *self.groups]
        step, offset = int(at.get("step", 0)), int(at.get("offset", 0))
        while step < len(steps):
            target = steps[step]
            if isinstance(target, str):
                params = {"end_time": str(until), "limit": str(PAGE_SIZE), "offset": str(offset)}
                if since is not None:
                    params["start_time"] = str(int((since - OVERLAP).timestamp()))
                body = self.api.request("GET", f"/v3/suppression/{target}", params=params)
                page = PullPage(parse_suppressions(body, kind_name=target, received_at=self.now()), None, 0)
                offset += PAGE_SIZE
                if not isinstance(body, list) or len(body) < PAGE_SIZE:
                    step, offset = step + 1, 0
            else:
                body = self.api.request("GET", f"/v3/asm/groups/{target}/suppressions")
                page = parse_group(body, group=target, scope=self.groups[target], received_at=self.now())
                step, offset = step + 1, 0
            done = step >= len(steps)
            yield dataclasses.replace(
                page,
                checkpoint=None if done else encode_checkpoint(until=until, step=step, offset=offset),
                calls=self.api.take_calls(),
            )


def make_puller(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> SendGridPuller:
    groups = {group: topic_scope(name) for name, group in _topic_groups(config).items()}
    return SendGridPuller(PullAPI(_api(config, http, now)), groups=groups, now=now)
