"""Mailchimp: webhook events in (verify, parse) and opt-outs pushed back out (API client).

The inbound section is pure (bytes in, events out) and ends with ``WEBHOOK``, the spec the
HTTP side serves (:mod:`adapters.providers.webhook`); the push-back section talks HTTP
through an injected `requests.Session`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote

import requests

from adapters.addresses import address_key
from adapters.config import Config, Secret, Topic
from adapters.errors import ConfigError, PayloadError, ProviderAPIError, SignatureError
from adapters.events import GLOBAL_SCOPE, Actor, Kind, OptOutEvent, Source, Verification, scope_topic, topic_scope
from adapters.providers import payloads
from adapters.providers.client import APIClient, Outcome, PushResult, Throttle, answer_key, push_each, result_for_error
from adapters.providers.pull import (
    PullAPI,
    PullPage,
    decode_checkpoint,
    encode_checkpoint,
    iso_time,
    pull_event_id,
    pulled_address,
)
from adapters.providers.webhook import OptOuts, UrlRule, WebhookRequest, WebhookSpec

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


def parse_events(
    body: bytes, content_type: str, *, topics: Sequence[Topic], lists: Sequence[str], received_at: datetime
) -> list[OptOutEvent]:
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
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
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
    list_id = payloads.text(fields.get("data[list_id]"), "data[list_id]", max_chars=100)
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
            provider_event_id=event_key(
                kind_name, fired_at, list_id, email.lower(), fields.get("data[action]", ""), reason or ""
            ),
            occurred_at=_fired_at(fired_at),
            received_at=received_at,
            reason=reason,
            campaign=fields.get("data[campaign_id]") or None,
            metadata={
                "type": kind_name,
                "list_id": list_id,
                "action": fields.get("data[action]"),
                **({"actor": subscribe_actor(fields).value} if kind is Kind.RESUBSCRIBE else {}),
            },
        )
    ]


def subscribe_actor(fields: Mapping[str, str]) -> Actor:
    """Who subscribed: the person only when the member record carries their double opt-in
    confirmation (``data[ip_opt]``, "the IP address the subscriber used to confirm their
    opt-in status", a valid IP address); otherwise an admin add, an import or an API call,
    which the payload does not tell apart.

    ``ip_opt`` alone proves little: it is member data repeated in every event (Mailchimp's
    documented *unsubscribe* sample carries one) and the members API lets a caller write it.
    It is trusted only together with the rest of README "Consent": the webhook leaves the
    ``api`` source off, and a Mailchimp subscribe may lift only an opt-out the person made at
    Mailchimp, which Mailchimp itself lets no admin undo (an unsubscribed member is re-added
    only through their own confirmation; pushes answer "Member In Compliance State").
    """
    try:
        ipaddress.ip_address(fields.get("data[ip_opt]", "").strip())
    except ValueError:
        return Actor.STAFF
    return Actor.PERSON


def event_key(*parts: str) -> str:
    """Mailchimp sends no event id: a hash of the fields a retry repeats stands in for one."""
    return "mc:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def _fired_at(value: str) -> datetime | None:
    """``fired_at`` is ``YYYY-MM-DD HH:MM:SS`` with no zone; Mailchimp means UTC."""
    if not value:
        return None
    try:
        return datetime.strptime(value, FIRED_AT_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise PayloadError(f"fired_at: expected YYYY-MM-DD HH:MM:SS, not {value!r}") from None


def check_url(path_args: Mapping[str, str], config: Config) -> None:
    """The secret path segment of ``/webhooks/mailchimp/<secret>`` (see :func:`verify_secret`)."""
    verify_secret(path_args["secret"], secret=config.providers.mailchimp.webhook_secret)


def read_webhook(request: WebhookRequest, config: Config, now: datetime) -> OptOuts:
    """A POSTed delivery, its URL already checked by :func:`check_url`."""
    return OptOuts(
        parse_events(
            request.body,
            request.content_type,
            topics=config.topics,
            lists=config.providers.mailchimp.lists,
            received_at=now,
        )
    )


# A GET on the URL is Mailchimp's check that the webhook answers.
WEBHOOK = WebhookSpec(
    read=read_webhook,
    refusal_status=404,
    refusal_message="not found",
    url=UrlRule("/<secret>", check=check_url, get_check=True),
    media_type="application/x-www-form-urlencoded",
)

# --- push-back: API client ------------------------------------------------------------------


def data_centre(api_key: str) -> str:
    """The data centre of a Marketing API key: its suffix after the last ``-`` (``…-us6``)."""
    prefix, dash, dc = api_key.rpartition("-")
    if not (prefix and dash and dc.isalnum()):
        raise ConfigError(
            "providers.mailchimp.api_key_env", "the API key has no data-centre suffix (…-usN); set base_url instead"
        )
    return dc


def subscriber_hash(address: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address."""
    return hashlib.md5(address.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpClient:
    """Pushes opt-outs to audiences: a global one to every configured list, a topic's to its list.

    Unsubscribes go through the list batch call (up to 500 members, ``update_existing``), which
    answers per address inside its 200. A resubscribe sets an existing member to ``pending``,
    so Mailchimp asks the person to confirm (its rules forbid re-subscribing them directly);
    a global one skips the lists of topics the person is still opted out of (``held``), which
    stay unsubscribed: Mailchimp would otherwise ask them to confirm a list they left.
    """

    slug = "mailchimp"

    def __init__(
        self, api: APIClient, *, lists: Sequence[str], topic_lists: Mapping[str, str], batch_size: int
    ) -> None:
        self.api = api
        self.lists = tuple(lists)
        self.topic_lists = dict(topic_lists)
        self.batch_size = min(batch_size, 500)

    def lists_for(self, scope: str) -> tuple[str, ...]:
        topic = scope_topic(scope)
        if topic is None:
            return self.lists
        return (self.topic_lists[topic],) if topic in self.topic_lists else ()

    def push(
        self, scope: str, action: str, emails: Sequence[str], *, held: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, PushResult]:
        results = {address_key(e): PushResult(Outcome.DONE, None, "no Mailchimp list for this scope") for e in emails}
        for i, list_id in enumerate(self.lists_for(scope)):
            part = self._push_list(list_id, action, emails, held or {})
            results = part if i == 0 else {k: results[k].worse(r) for k, r in part.items()}
        return results

    def _held_lists(self, scopes: Collection[str]) -> set[str]:
        """The lists that must stay unsubscribed while ``scopes`` are opted out: each topic's
        list, and every list of the global opt-out while it holds."""
        held = {self.topic_lists[t] for s in scopes if (t := scope_topic(s)) in self.topic_lists}
        return held | set(self.lists) if GLOBAL_SCOPE in scopes else held

    def _push_list(
        self, list_id: str, action: str, emails: Sequence[str], held: Mapping[str, Collection[str]]
    ) -> dict[str, PushResult]:
        if action == "resubscribe":
            kept = [e for e in emails if list_id in self._held_lists(held.get(address_key(e), ()))]
            results = push_each(
                [e for e in emails if e not in kept],
                lambda address: self._resubscribe(list_id, address),
                concurrency=self.api.throttle.concurrency,
            )
            skipped = PushResult(Outcome.DONE, None, f"list {list_id}: its topic is still opted out; kept unsubscribed")
            return {**results, **{address_key(e): skipped for e in kept}}
        members = [{"email_address": e, "status": "unsubscribed"} for e in emails]
        try:
            status, body = self.api.request(
                "POST", f"/3.0/lists/{quote(list_id, safe='')}", json_body={"members": members, "update_existing": True}
            )
        except ProviderAPIError as exc:
            failed = result_for_error(exc)
            return {address_key(e): failed for e in emails}
        body = body if isinstance(body, dict) else {}
        errors = {
            key: err
            for err in body.get("errors") or []
            if isinstance(err, dict) and (key := answer_key(err.get("email_address"))) is not None
        }
        results = {}
        for address in emails:
            err = errors.get(address_key(address))
            if err is None:
                results[address_key(address)] = PushResult(Outcome.DONE, status)
                continue
            detail = f"list {list_id}: {err.get('error_code') or 'error'}: {err.get('error') or ''}".strip()
            gone = "forgotten email" in str(err.get("error", "")).lower()  # permanently deleted: nothing to suppress
            results[address_key(address)] = PushResult(Outcome.DONE if gone else Outcome.DEAD, status, detail)
        return results

    def _resubscribe(self, list_id: str, address: str) -> PushResult:
        path = f"/3.0/lists/{quote(list_id, safe='')}/members/{subscriber_hash(address)}"
        try:
            status, _ = self.api.request("PATCH", path, json_body={"status": "pending"})
        except ProviderAPIError as exc:
            if exc.status == 404:
                return PushResult(Outcome.DONE, 404, f"list {list_id}: no such member")
            raise
        return PushResult(Outcome.DONE, status)

    def check(self) -> str:
        self.api.request("GET", "/3.0/ping")
        names = []
        for list_id in dict.fromkeys(self.lists + tuple(self.topic_lists.values())):
            _, body = self.api.request("GET", f"/3.0/lists/{quote(list_id, safe='')}", params={"fields": "id,name"})
            names.append(f"{list_id} ({(body or {}).get('name', '?')})")
        return "ping ok; lists: " + (", ".join(names) or "none configured")


def _api(config: Config, http: requests.Session, now: Callable[[], datetime]) -> APIClient:
    cfg = config.providers.mailchimp
    if cfg.api_key is None:
        raise ConfigError("providers.mailchimp.api_key_env", "no API key")
    key = cfg.api_key.reveal()
    base_url = cfg.base_url or f"https://{data_centre(key)}.api.mailchimp.com"
    credentials = base64.b64encode(f"optout-hub:{key}".encode()).decode()
    return APIClient(
        "mailchimp",
        http,
        base_url,
        f"Basic {credentials}",
        timeout=cfg.timeout_seconds,
        secrets=(key, credentials),
        now=now,
        throttle=Throttle(cfg.max_concurrent_requests, now=now),
    )


def make_client(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> MailchimpClient:
    cfg = config.providers.mailchimp
    topic_lists = {t.name: t.mailchimp_list for t in config.topics if t.mailchimp_list}
    return MailchimpClient(_api(config, http, now), lists=cfg.lists, topic_lists=topic_lists, batch_size=cfg.batch_size)


# --- pull: members unsubscribed or cleaned since a time (README "Reconciliation") -----------

PULL_KINDS = {"unsubscribed": Kind.UNSUBSCRIBE, "cleaned": Kind.BOUNCE}
MAILABLE = frozenset({"subscribed", "pending"})
PAGE_SIZE = 1000  # the API's maximum count
MEMBER_FIELDS = (
    "members.email_address,members.status,members.last_changed,members.unsubscribe_reason,members.list_id,total_items"
)
OVERLAP = timedelta(minutes=5)  # since_last_changed is exclusive and said to miss members: read a little again
SETTLE = timedelta(minutes=1)  # the window ends a little before now, so paging by offset stays stable


def parse_members(
    body: object, *, list_id: str, scope: str, received_at: datetime
) -> tuple[list[OptOutEvent], list[str], int]:
    """One page of ``GET /lists/{id}/members``: opt-outs (``unsubscribed``, ``cleaned``) as
    events at ``scope``, the addresses still mailable there, and ``total_items``."""
    if not isinstance(body, dict) or not isinstance(body.get("members"), list):
        raise PayloadError("members: missing or not a list")
    events, mailable = [], []
    for member in body["members"]:
        if not isinstance(member, dict):
            continue
        status = member.get("status")
        email = pulled_address(member.get("email_address"), "mailchimp")
        if email is None:
            continue
        if status in MAILABLE:
            mailable.append(email)
            continue
        kind = PULL_KINDS.get(str(status))
        if kind is None:
            continue
        changed = str(member.get("last_changed") or "")
        reason = member.get("unsubscribe_reason")
        events.append(
            OptOutEvent(
                email=email,
                kind=kind,
                source=Source.MAILCHIMP,
                scope=scope,
                verification=Verification.PULL,
                provider_event_id=pull_event_id("mc-pull", list_id, status, email.lower(), changed),
                occurred_at=iso_time(changed),
                received_at=received_at,
                reason=reason if isinstance(reason, str) and reason else None,
                metadata={"list_id": list_id, "status": status},
            )
        )
    total = body.get("total_items")
    return events, mailable, total if isinstance(total, int) and not isinstance(total, bool) else 0


class MailchimpPuller:
    """Reads each audience (``lists`` are global, a topic's list is that topic) by status,
    oldest change first, in a window frozen at the pull's start (``before_last_changed``), so
    offset paging is stable. ``unsubscribed`` and ``cleaned`` members are opt-outs; with a
    ``since`` (not a backfill), members changed to ``subscribed`` or ``pending`` are read too,
    to find drift. A checkpoint is the window's end, the step and the offset."""

    slug = "mailchimp"

    def __init__(self, api: PullAPI, *, scopes: Mapping[str, str], now: Callable[[], datetime]) -> None:
        self.api = api
        self.scopes = dict(scopes)  # list id -> scope
        self.now = now

    def pull(self, *, since: datetime | None, checkpoint: str | None) -> Iterator[PullPage]:
        at = decode_checkpoint(checkpoint)
        until = at.get("until") or (self.now() - SETTLE).isoformat(timespec="seconds")
        statuses = (*PULL_KINDS, "subscribed") if since is not None else tuple(PULL_KINDS)
        steps = [(list_id, status) for list_id in self.scopes for status in statuses]
        step, offset = int(at.get("step", 0)), int(at.get("offset", 0))
        while step < len(steps):
            list_id, status = steps[step]
            params = {
                "status": status,
                "before_last_changed": until,
                "sort_field": "last_changed",
                "sort_dir": "ASC",
                "count": str(PAGE_SIZE),
                "offset": str(offset),
                "fields": MEMBER_FIELDS,
            }
            if since is not None:
                params["since_last_changed"] = (since - OVERLAP).isoformat(timespec="seconds")
            body = self.api.request("GET", f"/3.0/lists/{quote(list_id, safe='')}/members", params=params)
            events, mailable, total = parse_members(
                body, list_id=list_id, scope=self.scopes[list_id], received_at=self.now()
            )
            offset += PAGE_SIZE
            if offset >= total:
                step, offset = step + 1, 0
            done = step >= len(steps)
            yield PullPage(
                events=events,
                checkpoint=None if done else encode_checkpoint(until=until, step=step, offset=offset),
                calls=self.api.take_calls(),
                mailable=mailable,
                scope=self.scopes[list_id],
            )


def make_puller(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> MailchimpPuller:
    # A list in ``lists`` receives every global opt-out: what it holds is read as global, or
    # the hub's own pushes there would come back as topic opt-outs.
    scopes = dict.fromkeys(config.providers.mailchimp.lists, GLOBAL_SCOPE)
    for t in config.topics:
        if t.mailchimp_list:
            scopes.setdefault(t.mailchimp_list, topic_scope(t.name))
    return MailchimpPuller(PullAPI(_api(config, http, now)), scopes=scopes, now=now)
