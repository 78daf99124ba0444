"""Constant Contact (API v3): opt-outs pushed out, and those made there pulled back in.

Constant Contact has no unsubscribe webhooks (README "Constant Contact"), so there is no
``WEBHOOK``: what people do there is learned by polling (:func:`make_puller`). Everything
else goes through :class:`ConstantContactAPI`: an OAuth2 bearer token that rotates
(:mod:`adapters.providers.oauth`), and the application's budget of 4 requests a second and
10,000 a day, spent through the :class:`CCState` the caller passes in (the store keeps the
tokens, the contact ids learned and the day's count in the database).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import requests

from adapters.addresses import address_key, normalize_address
from adapters.config import Config
from adapters.errors import AddressError, ConfigError, PayloadError, ProviderAPIError
from adapters.events import Actor, Kind, OptOutEvent, Source, Verification, scope_topic
from adapters.providers.client import APIClient, Outcome, PushResult, push_each, result_for_error
from adapters.providers.oauth import OAuthClient, TokenStore
from adapters.providers.pull import PullPage

log = logging.getLogger(__name__)

SLUG = "constant_contact"
DEFAULT_BASE_URL = "https://api.cc.email"
DEFAULT_AUTH_URL = "https://authz.constantcontact.com"
CONTACTS = "/v3/contacts"
REMOVE_FROM_LISTS = "/v3/activities/remove_list_memberships"
PAGE_SIZE = 500  # the most GET /v3/contacts answers per page
PULL_OVERLAP = timedelta(minutes=5)  # windows overlap; events are stored once by their id
THROTTLE_WAIT = 2.0  # seconds after a "throttled" 429 (Constant Contact sends no Retry-After)
OPT_OUT_REASON = "Opted out through optout-hub"
LOOKED_UP = "looked up"  # a contact found for a list removal (its id is now known)
# The core fields a PUT nulls when left out (subresources left out are kept).
CORE_FIELDS = (
    "first_name",
    "last_name",
    "job_title",
    "company_name",
    "birthday_month",
    "birthday_day",
    "anniversary",
)


WEBHOOK = None
"""Constant Contact sends no contact webhooks: ``/webhooks/constant_contact`` answers 404."""


# --- shared: the budget, the contact ids, the API ---------------------------------------


class Pacer:
    """Spaces one process's calls to ``rate`` a second, whichever thread makes them. Several
    processes each keep their own pace; Constant Contact's ``throttled`` 429 then backs them
    off (README "Constant Contact")."""

    def __init__(
        self, rate: float, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.interval = 1.1 / rate  # 10 % slack: the API counts arrivals, which jitter
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


class CCState(TokenStore, Protocol):
    """What the Constant Contact adapter keeps in the hub's database, one per process."""

    pacer: Pacer

    def spend(self) -> None:
        """Count one call against the day's budget (UTC days), for every process together;
        raises :class:`ProviderAPIError` (429, ``retry_after`` until midnight UTC) when the
        budget is spent or Constant Contact said ``quota_exceeded``."""
        ...

    def exhaust(self, until: datetime) -> None:
        """Constant Contact refused the day's quota: no call before ``until``."""
        ...

    def contact_ids(self, keys: Collection[str]) -> dict[str, str]:
        """The contact ids learned for these address keys."""
        ...

    def remember(self, ids: Mapping[str, str]) -> None:
        """Keep contact ids by address key (from lookups and pulls)."""
        ...


def next_midnight(now: datetime) -> datetime:
    """00:00 UTC after ``now``: when Constant Contact's daily quota resets."""
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _error_key(body: Any) -> str:
    """``error_key`` of an error body: an object for 401/429, an array for the rest."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    return str(body.get("error_key") or "") if isinstance(body, dict) else ""


class ConstantContactAPI:
    """Paced, budgeted, authorized calls. A 401 refreshes the token once and retries once;
    a ``quota_exceeded`` 429 closes the budget until midnight UTC for every process."""

    def __init__(
        self,
        http: requests.Session,
        *,
        base_url: str,
        oauth: OAuthClient,
        state: CCState,
        now: Callable[[], datetime],
        timeout: float,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.oauth = oauth
        self.state = state
        self.now = now
        self.timeout = timeout
        self.calls = 0

    def request(
        self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """One call: ``path`` below the host (``/v3/...``, as ``_links`` hrefs are given)."""
        token = self.oauth.access_token()
        try:
            return self._send(token, method, path, json_body, params)
        except ProviderAPIError as exc:
            if exc.status != 401:
                raise
        return self._send(self.oauth.after_unauthorized(token), method, path, json_body, params)

    def _send(
        self, token: str, method: str, path: str, json_body: Any, params: Mapping[str, str] | None
    ) -> tuple[int, Any]:
        self.state.spend()
        self.state.pacer.wait()
        self.calls += 1
        api = APIClient(
            SLUG,
            self.http,
            self.base_url,
            f"Bearer {token}",
            timeout=self.timeout,
            secrets=(token,),
            now=self.now,
            retry_hint=self._rate_wait,
        )
        return api.request(method, path, json_body=json_body, params=params)

    def _rate_wait(self, resp: requests.Response, body: Any, now: datetime) -> float:
        if _error_key(body) == "quota_exceeded":
            until = next_midnight(now)
            self.state.exhaust(until)
            return (until - now).total_seconds()
        return THROTTLE_WAIT


def _api(
    config: Config, http: requests.Session, now: Callable[[], datetime], state: CCState | None
) -> ConstantContactAPI:
    cfg = config.providers.constant_contact
    if state is None:
        raise ConfigError("providers.constant_contact", "needs the hub's database for its tokens and budget")
    if cfg.client_secret is None:
        raise ConfigError("providers.constant_contact.client_secret_env", "no client secret")
    oauth = OAuthClient(
        SLUG,
        http,
        auth_url=cfg.auth_url or DEFAULT_AUTH_URL,
        client_id=cfg.client_id,
        client_secret=cfg.client_secret,
        initial_refresh=cfg.refresh_token,
        store=state,
        now=now,
        timeout=cfg.timeout_seconds,
    )
    return ConstantContactAPI(
        http, base_url=cfg.base_url or DEFAULT_BASE_URL, oauth=oauth, state=state, now=now, timeout=cfg.timeout_seconds
    )


def make_oauth(config: Config, http: requests.Session, *, now: Callable[[], datetime], state: CCState) -> OAuthClient:
    """The OAuth client alone, for re-authorizing from ``/admin``."""
    return _api(config, http, now, state).oauth


# --- push-back --------------------------------------------------------------------------


def _address(contact: Mapping[str, Any]) -> Mapping[str, Any]:
    value = contact.get("email_address")
    return value if isinstance(value, dict) else {}


class ConstantContactClient:
    """Global opt-outs: read the contact and PUT its whole record back unsubscribed (the PUT
    replaces it), or create an unknown address already unsubscribed. Topics: removal from the
    mapped list, up to 500 contacts in one activity. Resubscribes only as Constant Contact
    allows them (README "Constant Contact")."""

    slug = SLUG
    batch_size = 50  # per-address calls at 4 a second: a chunk is about 25 s of the lease

    def __init__(self, api: ConstantContactAPI, *, topic_lists: Mapping[str, str]) -> None:
        self.api = api
        self.topic_lists = dict(topic_lists)

    def push(
        self, scope: str, action: str, emails: Sequence[str], *, held: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, PushResult]:
        """``held``: per address, the topic scopes still opted out; a global resubscribe asks
        for no confirmation to their lists."""
        topic = scope_topic(scope)
        if topic is None:
            if action == "unsubscribe":
                return push_each(emails, self._unsubscribe)
            held = held or {}
            return push_each(emails, lambda address: self._resubscribe(address, held.get(address_key(address), ())))
        list_id = self.topic_lists.get(topic)
        if list_id is None:
            done = PushResult(Outcome.DONE, None, "no Constant Contact list for this scope")
            return {address_key(e): done for e in emails}
        if action == "unsubscribe":
            return self._remove_from_list(list_id, emails)
        return push_each(emails, lambda address: self._add_to_list(address, list_id))

    # Reading contacts -------------------------------------------------------------------

    def lookup(self, address: str) -> dict[str, Any] | None:
        """The contact with this address, deleted ones included, with its lists; by the id
        learned before when there is one (a deleted id falls back to the address)."""
        key = address_key(address)
        known = self.api.state.contact_ids([key]).get(key)
        if known is not None:
            try:
                _, body = self.api.request("GET", f"{CONTACTS}/{quote(known)}", params={"include": "list_memberships"})
            except ProviderAPIError as exc:
                if exc.status != 404:
                    raise
            else:
                if isinstance(body, dict) and answer_matches(body, key):
                    return body
        _, body = self.api.request(
            "GET", CONTACTS, params={"email": address, "status": "all", "include": "list_memberships"}
        )
        contacts = body.get("contacts") if isinstance(body, dict) else None
        for contact in contacts if isinstance(contacts, list) else []:
            if isinstance(contact, dict) and answer_matches(contact, key):
                self.api.state.remember({key: str(contact["contact_id"])})
                return contact
        return None

    # Global ------------------------------------------------------------------------------

    def _unsubscribe(self, address: str) -> PushResult:
        contact = self.lookup(address)
        if contact is None:
            body = {
                "email_address": {
                    "address": address,
                    "permission_to_send": "unsubscribed",
                    "opt_out_reason": OPT_OUT_REASON,
                },
                "create_source": "Account",
            }
            try:
                status, created = self.api.request("POST", CONTACTS, json_body=body)
            except ProviderAPIError as exc:
                if exc.status != 409:  # created meanwhile (or deleted earlier): read it and PUT
                    raise
                contact = self.lookup(address)
                if contact is None:
                    raise
            else:
                if isinstance(created, dict) and created.get("contact_id"):
                    self.api.state.remember({address_key(address): str(created["contact_id"])})
                return PushResult(Outcome.DONE, status, "created unsubscribed")
        if _address(contact).get("permission_to_send") == "unsubscribed":
            return PushResult(Outcome.DONE, None, "already unsubscribed")
        # A deleted contact is revived (as unsubscribed) only with the source "Account".
        source = "Account" if contact.get("deleted_at") else "Contact"
        status, _ = self._put(
            contact,
            {"permission_to_send": "unsubscribed", "opt_out_reason": OPT_OUT_REASON},
            update_source=source,
        )
        return PushResult(Outcome.DONE, status)

    def _resubscribe(self, address: str, held: Collection[str] = ()) -> PushResult:
        contact = self.lookup(address)
        if contact is None:
            return PushResult(Outcome.DONE, None, "not at Constant Contact: nothing to resubscribe")
        email = _address(contact)
        if email.get("permission_to_send") != "unsubscribed":
            return PushResult(Outcome.DONE, None, "already mailable at Constant Contact")
        if email.get("opt_out_source") != "Contact":
            status, _ = self._put(contact, {"permission_to_send": "explicit"}, update_source="Contact")
            return PushResult(Outcome.DONE, status, "resubscribed (the opt-out there was the account's)")
        held_topics = {scope_topic(scope) for scope in held}
        lists = sorted({list_id for topic, list_id in self.topic_lists.items() if topic not in held_topics})
        if not lists:
            return PushResult(
                Outcome.DONE,
                None,
                "not resubscribed: the contact opted out at Constant Contact, and without a list "
                "([[topics]] constant_contact_list) no confirmation mail can be sent",
            )
        try:
            status, _ = self.api.request(
                "PUT", f"{CONTACTS}/resubscribe/{quote(str(contact['contact_id']))}", json_body={"list_ids": lists}
            )
        except ProviderAPIError as exc:
            if exc.status != 409:
                raise
            return PushResult(
                Outcome.DONE,
                409,
                "not resubscribed: Constant Contact sends its resubscribe confirmation only once, and it "
                "was sent before; only the contact can opt back in there",
            )
        return PushResult(
            Outcome.DONE,
            status,
            "confirmation requested: Constant Contact mailed the contact; they are mailable there "
            "only once they confirm (the contact opted out there themselves)",
        )

    def _put(
        self, contact: Mapping[str, Any], email_changes: Mapping[str, Any], *, update_source: str, **extra: Any
    ) -> tuple[int, Any]:
        """PUT the contact back as read, with ``email_changes`` (the PUT replaces the record:
        every core field read is sent again)."""
        body: dict[str, Any] = {f: contact[f] for f in CORE_FIELDS if f in contact}
        body["email_address"] = {"address": _address(contact).get("address"), **email_changes}
        body["update_source"] = update_source
        body.update(extra)
        return self.api.request("PUT", f"{CONTACTS}/{quote(str(contact['contact_id']))}", json_body=body)

    # Topics --------------------------------------------------------------------------------

    def _remove_from_list(self, list_id: str, emails: Sequence[str]) -> dict[str, PushResult]:
        """One activity for every contact of the batch; the ids come from what was learned
        before, a lookup only for the others. An address unknown there is on no list."""
        keys = {address_key(e): e for e in emails}
        ids = self.api.state.contact_ids(list(keys))
        results = push_each([e for k, e in keys.items() if k not in ids], self._learn_id)
        ids = self.api.state.contact_ids(list(keys))  # with the ids just looked up
        targets = [k for k in keys if k in ids and (k not in results or results[k].detail == LOOKED_UP)]
        if targets:
            try:
                status, _ = self.api.request(
                    "POST",
                    REMOVE_FROM_LISTS,
                    json_body={"source": {"contact_ids": [ids[k] for k in targets]}, "list_ids": [list_id]},
                )
                outcome = PushResult(Outcome.DONE, status, "removed from the list")
            except ProviderAPIError as exc:
                outcome = result_for_error(exc)
            results.update(dict.fromkeys(targets, outcome))
        return results

    def _learn_id(self, address: str) -> PushResult:
        if self.lookup(address) is None:
            return PushResult(Outcome.DONE, None, "not at Constant Contact: on no list")
        return PushResult(Outcome.DONE, None, LOOKED_UP)

    def _add_to_list(self, address: str, list_id: str) -> PushResult:
        contact = self.lookup(address)
        if contact is None:
            return PushResult(Outcome.DONE, None, "not at Constant Contact: nothing to resubscribe")
        email = _address(contact)
        if email.get("permission_to_send") == "unsubscribed":
            return PushResult(
                Outcome.DONE, None, "not added: the contact is unsubscribed at Constant Contact as a whole"
            )
        lists = [str(x) for x in contact.get("list_memberships") or []]
        if list_id in lists:
            return PushResult(Outcome.DONE, None, "already on the list")
        status, _ = self._put(contact, {}, update_source="Contact", list_memberships=[*lists, list_id])
        return PushResult(Outcome.DONE, status)

    def check(self) -> str:
        _, body = self.api.request("GET", CONTACTS, params={"limit": "1"})
        if not isinstance(body, dict) or not isinstance(body.get("contacts"), list):
            raise ProviderAPIError(SLUG, "GET /v3/contacts answered an unexpected body")
        return "token ok; contacts readable"


def answer_matches(contact: Mapping[str, Any], key: str) -> bool:
    """Whether a contact Constant Contact answered is the address asked for (compared as
    address keys: how the API matches ``email=`` is not documented) and has an id."""
    address = _address(contact).get("address")
    if not isinstance(address, str) or not contact.get("contact_id"):
        return False
    try:
        return address_key(address) == key
    except PayloadError:
        return False


def make_client(
    config: Config, http: requests.Session, *, now: Callable[[], datetime], state: CCState | None = None
) -> ConstantContactClient:
    lists = {t.name: t.constant_contact_list for t in config.topics if t.constant_contact_list}
    return ConstantContactClient(_api(config, http, now, state), topic_lists=lists)


# --- pull: opt-outs made at Constant Contact --------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Position:
    """Where a pull stands: ``window`` (``optout_after``) or ``scan`` (every unsubscribed
    contact, kept from ``floor`` on), and the next page's href."""

    mode: str
    next: str | None
    floor: str | None

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def load(cls, text: str) -> _Position:
        try:
            data = json.loads(text)
            return cls(str(data["mode"]), data.get("next"), data.get("floor"))
        except (ValueError, KeyError, TypeError):
            raise PayloadError("constant_contact checkpoint: unreadable") from None


def _iso(when: datetime) -> str:
    """The ISO-8601 form Constant Contact's date filters take (``2022-11-16T16:20:59.091Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _when(value: Any, where: str) -> datetime:
    """An aware time from an ISO-8601 date-time as Constant Contact writes them."""
    if not isinstance(value, str):
        raise PayloadError(f"{where}: missing or not a date-time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"{where}: not an ISO-8601 date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ConstantContactPuller:
    """Opt-outs made at Constant Contact, by polling (it sends no webhooks).

    With ``since``: ``GET /v3/contacts?status=all&optout_after=<since - 5 min>`` (windows
    overlap; an event's id is the contact and its opt-out date, so nothing is stored twice).
    Constant Contact's support has said the date filter does not work: a 400 naming it falls
    back to the full scan, as does a pull without ``since`` (the backfill): every
    ``status=unsubscribed`` contact, kept when opted out from the floor on. Each contact's id
    is remembered, so a later push to it needs no lookup.
    """

    slug = SLUG

    def __init__(self, api: ConstantContactAPI) -> None:
        self.api = api

    def pull(self, *, since: datetime | None, checkpoint: str | None) -> Iterator[PullPage]:
        if checkpoint is not None:
            position = _Position.load(checkpoint)
        else:
            floor = _iso(since - PULL_OVERLAP) if since is not None else None
            position = _Position("window" if floor else "scan", None, floor)
        while True:
            before = self.api.calls
            try:
                body = self._page(position)
            except ProviderAPIError as exc:
                if position.mode != "window" or exc.status != 400 or "optout" not in f"{exc} {exc.body}":
                    raise
                log.warning("constant_contact: optout_after refused (%s); falling back to a full scan", exc)
                position = _Position("scan", None, position.floor)
                continue
            contacts = body.get("contacts") if isinstance(body, dict) else None
            if not isinstance(contacts, list):
                raise ProviderAPIError(SLUG, "GET /v3/contacts answered an unexpected body")
            events = self._events(contacts, position.floor)
            links = body.get("_links") if isinstance(body.get("_links"), dict) else {}
            href = (links.get("next") or {}).get("href") if isinstance(links.get("next"), dict) else None
            position = _Position(position.mode, href if isinstance(href, str) and href else None, position.floor)
            yield PullPage(events, position.dump() if position.next else None, self.api.calls - before)
            if position.next is None:
                return

    def _page(self, position: _Position) -> Any:
        if position.next is not None:
            if not position.next.startswith(f"{CONTACTS}?"):
                raise ProviderAPIError(SLUG, "a next link outside /v3/contacts")
            _, body = self.api.request("GET", position.next)
            return body
        params = {"limit": str(PAGE_SIZE)}
        if position.mode == "window":
            params.update(status="all", optout_after=position.floor or "")
        else:
            params.update(status="unsubscribed")
        _, body = self.api.request("GET", CONTACTS, params=params)
        return body

    def _events(self, contacts: Sequence[Any], floor: str | None) -> list[OptOutEvent]:
        """The opt-outs among a page's contacts (from ``floor`` on), remembering every id."""
        now = self.api.now()
        lowest = _when(floor, "floor") if floor else None
        events, ids = [], {}
        for contact in contacts:
            email = _address(contact) if isinstance(contact, dict) else {}
            try:
                address = normalize_address(email.get("address", ""))
            except AddressError:
                continue  # no address we could push to or record
            if not contact.get("contact_id"):
                continue
            ids[address.key] = str(contact["contact_id"])
            if email.get("permission_to_send") != "unsubscribed" or not email.get("opt_out_date"):
                continue
            try:
                when = _when(email["opt_out_date"], f"contact {contact['contact_id']}: email_address.opt_out_date")
            except PayloadError as exc:  # one unreadable contact holds back no other
                log.warning("constant_contact pull: skipped %s", exc)
                continue
            if lowest is not None and when < lowest:
                continue
            source = email.get("opt_out_source")
            events.append(
                OptOutEvent(
                    email=address.email,
                    kind=Kind.UNSUBSCRIBE,
                    source=Source.CONSTANT_CONTACT,
                    verification=Verification.PULL,
                    provider_event_id=f"optout:{contact['contact_id']}:{email['opt_out_date']}"[:200],
                    occurred_at=when,
                    received_at=now,
                    reason=str(email.get("opt_out_reason") or "") or None,
                    metadata={
                        "contact_id": contact["contact_id"],
                        "opt_out_source": source,
                        "actor": (Actor.PERSON if source == "Contact" else Actor.STAFF).value,
                    },
                )
            )
        if ids:
            self.api.state.remember(ids)
        return events


def make_puller(
    config: Config, http: requests.Session, *, now: Callable[[], datetime], state: CCState | None = None
) -> ConstantContactPuller:
    return ConstantContactPuller(_api(config, http, now, state))
