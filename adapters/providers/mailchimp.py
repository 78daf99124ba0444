"""Mailchimp: webhook events in (verify, parse) and opt-outs pushed back out (API client).

The inbound section is pure (bytes in, events out) and ends with ``WEBHOOK``, the spec the
HTTP side serves (:mod:`adapters.providers.webhook`); the push-back section talks HTTP
through an injected `requests.Session`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

import requests

from adapters.addresses import address_key
from adapters.config import Config, Secret, Topic
from adapters.errors import ConfigError, PayloadError, ProviderAPIError, SignatureError
from adapters.events import GLOBAL_SCOPE, Actor, Kind, OptOutEvent, Source, Verification, scope_topic, topic_scope
from adapters.providers import payloads
from adapters.providers.client import APIClient, Outcome, PushResult, answer_key, push_each, result_for_error
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
    """Who subscribed: the person only when Mailchimp records their own confirmation (the
    double opt-in's ``data[ip_opt]``); a subscribe without one is an admin add, an import or
    an API call, which the payload does not tell apart (README "Consent")."""
    return Actor.PERSON if fields.get("data[ip_opt]") else Actor.STAFF


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
    so Mailchimp asks the person to confirm (its rules forbid re-subscribing them directly).
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

    def push(self, scope: str, action: str, emails: Sequence[str]) -> dict[str, PushResult]:
        results = {address_key(e): PushResult(Outcome.DONE, None, "no Mailchimp list for this scope") for e in emails}
        for i, list_id in enumerate(self.lists_for(scope)):
            part = self._push_list(list_id, action, emails)
            results = part if i == 0 else {k: results[k].worse(r) for k, r in part.items()}
        return results

    def _push_list(self, list_id: str, action: str, emails: Sequence[str]) -> dict[str, PushResult]:
        if action == "resubscribe":
            return push_each(emails, lambda address: self._resubscribe(list_id, address))
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


def make_client(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> MailchimpClient:
    cfg = config.providers.mailchimp
    if cfg.api_key is None:
        raise ConfigError("providers.mailchimp.api_key_env", "no API key")
    key = cfg.api_key.reveal()
    base_url = cfg.base_url or f"https://{data_centre(key)}.api.mailchimp.com"
    credentials = base64.b64encode(f"optout-hub:{key}".encode()).decode()
    api = APIClient(
        "mailchimp",
        http,
        base_url,
        f"Basic {credentials}",
        timeout=cfg.timeout_seconds,
        secrets=(key, credentials),
        now=now,
    )
    topic_lists = {t.name: t.mailchimp_list for t in config.topics if t.mailchimp_list}
    return MailchimpClient(api, lists=cfg.lists, topic_lists=topic_lists, batch_size=cfg.batch_size)
