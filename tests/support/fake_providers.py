"""Fake provider APIs: real HTTP servers in threads that behave like Mailchimp, SendGrid,
HubSpot and Constant Contact for the calls optout-hub makes, as the providers document them.

One base, :class:`FakeAPI`, serves every fake: each provider's fake (:class:`FakeMailchimp`,
:class:`FakeSendGrid`, :class:`FakeHubSpot`, started together by :class:`FakeProviders`;
:class:`FakeConstantContact`, started alone where a test needs it) and
:class:`FakeContactsAPI`, HubSpot's contacts batch read alone for the contact-lookup tests.

Each fake checks method, path, query, auth header and body shape of every request and rejects
anything else the way the real API would (401 for bad credentials, 400 for a bad body, 404
for an unknown route), noting the request in ``unexpected`` so a test can fail on it. It keeps
the provider's state (suppressed addresses, list members; ``globally_suppressed()``), records
each accepted call, and can fail on demand: ``fail_next(status, retry_after=...)``,
``fail_next(timeout=...)`` and ``hold()`` (requests wait until released). ``max_in_flight`` is
the most requests it was serving at once, to check a client's concurrency bound.
"""

from __future__ import annotations

import base64
import bisect
import collections
import contextlib
import copy
import dataclasses
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us6"
SENDGRID_KEY = "SG.fake-sendgrid-key.0123456789"
HUBSPOT_TOKEN = "pat-na1-fake-hubspot-token-0123"
CONTACTS_BATCH_READ = "/crm/v3/objects/contacts/batch/read"


def provider_env_vars() -> dict[str, str]:
    return {"MAILCHIMP_API_KEY": MAILCHIMP_KEY, "SENDGRID_API_KEY": SENDGRID_KEY, "HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN}


class Reject(Exception):
    """Answer a request with an error status and body, like the real API would."""

    def __init__(
        self, status: int, body: Any, *, unexpected: bool = True, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.unexpected = unexpected
        self.headers = headers or {}


@dataclasses.dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    at: float  # time.time() when answered


@dataclasses.dataclass
class Failure:
    status: int
    headers: dict[str, str]
    body: Any
    delay: float  # seconds to wait before answering (a time-out for a client with a shorter one)


class FakeAPI:
    """One provider's API. Subclasses implement ``check_auth`` and ``route``."""

    provider = ""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.unexpected: list[str] = []
        self.latency = 0.0  # seconds added to every answer
        self.headers: dict[str, str] = {}
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests served at once
        self._failures: collections.deque[Failure] = collections.deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self.waiting = threading.Semaphore(0)  # released once per request that reached a hold
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-{self.provider}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    # Failure plans --------------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        timeout: float = 0.0,
    ) -> None:
        """The next ``times`` requests answer ``status`` (after ``timeout`` seconds, if set)."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = retry_after
        for _ in range(times):
            self._failures.append(
                Failure(
                    status,
                    hdrs,
                    body if body is not None else {"errors": [{"field": None, "message": f"fake {status}"}]},
                    timeout,
                )
            )

    def forget_failures(self) -> None:
        """Drop the failures planned by :meth:`fail_next` that no request has met yet."""
        self._failures.clear()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Requests wait (each releasing ``waiting`` once) until the block ends."""
        self._released.clear()
        try:
            yield
        finally:
            self._released.set()

    # Bookkeeping ----------------------------------------------------------------------------

    def calls_to(self, method: str, path_prefix: str = "") -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]

    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._serve(method, target, headers, raw)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _serve(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], Any]:
        split = urlsplit(target)
        path, query = unquote(split.path), parse_qs(split.query, keep_blank_values=True)
        if not self._released.is_set():
            self.waiting.release()
            self._released.wait()
        if self.latency:
            time.sleep(self.latency)
        try:
            self.check_auth(headers.get("Authorization", ""))
            body = None
            if raw:
                if not (headers.get("Content-Type") or "").startswith("application/json"):
                    raise Reject(415, {"message": "Content-Type must be application/json"})
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise Reject(400, {"message": "body is not JSON"}) from None
            failure = self._failures.popleft() if self._failures else None
            if failure is not None:
                time.sleep(failure.delay)
                status, extra, answer = failure.status, failure.headers, failure.body
            else:
                with self._lock:
                    self.headers = {}  # a route may add response headers here
                    status, answer = self.route(method, path, query, body)
                    extra = self.headers
        except Reject as exc:
            if exc.unexpected:
                self.unexpected.append(f"{method} {target}: {exc.status} {exc.body}")
            status, extra, answer = exc.status, exc.headers, exc.body
            body = None
        with self._lock:
            self.calls.append(Call(method, path, query, body, status, time.time()))
        return status, extra, answer

    def check_auth(self, authorization: str) -> None:
        raise NotImplementedError

    def globally_suppressed(self) -> set[str]:
        """The addresses (lower-cased) this provider holds opted out of everything."""
        with self._lock:
            return self.global_optouts()

    def global_optouts(self) -> set[str]:
        raise NotImplementedError

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    api: FakeAPI
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, headers, answer = self.api.serve(self.command, self.path, self.headers, raw)
        data = b"" if answer is None else json.dumps(answer).encode()
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a time-out): like a real server, carry on

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError):  # the client went away (killed): carry on
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _bearer(authorization: str, secret: str, body: Any) -> None:
    if authorization != f"Bearer {secret}":
        raise Reject(401, body, unexpected=False)


def _strings(value: Any, where: str, *, limit: int | None = None) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and "@" in v for v in value):
        raise Reject(400, {"errors": [{"field": where, "message": "must be a non-empty array of email addresses"}]})
    if limit is not None and len(value) > limit:
        raise Reject(400, {"errors": [{"field": where, "message": f"at most {limit} items"}]})
    return value


MEMBER_STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived"})
MEMBER_SORTS = frozenset({"timestamp_opt", "timestamp_signup", "last_changed"})
MEMBER_PARAMS = frozenset(
    {
        "count",
        "offset",
        "status",
        "since_last_changed",
        "before_last_changed",
        "since_timestamp_opt",
        "before_timestamp_opt",
        "sort_field",
        "sort_dir",
        "unsubscribed_since",
        "fields",
        "exclude_fields",
    }
)


def _mc_invalid(detail: str) -> Reject:
    return Reject(400, {"type": "about:blank", "title": "Invalid Resource", "status": 400, "detail": detail})


def _iso_with_offset(value: str, name: str) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _mc_invalid(f"{name}: not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise _mc_invalid(f"{name}: ISO 8601 with an offset, like 2015-10-21T15:41:36+00:00")
    return parsed.timestamp()


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, tz=UTC).isoformat(timespec="seconds")


def _one(query: dict[str, list[str]], name: str, reject: Any) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise reject(f"{name}: given more than once")
    return values[0]


class _MailchimpMembers:
    """``GET /3.0/lists/{id}/members`` for :class:`FakeMailchimp`, validated as the API does."""

    def _members_page(self: Any, list_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        members = self._list(list_id)
        unknown = set(query) - MEMBER_PARAMS
        if unknown:
            raise _mc_invalid(f"unknown parameters {sorted(unknown)}")
        get = lambda name: _one(query, name, _mc_invalid)  # noqa: E731
        count_text, offset_text = get("count") or "10", get("offset") or "0"
        if not count_text.isdigit() or not 1 <= int(count_text) <= 1000:
            raise _mc_invalid("count: at most 1000")
        if not offset_text.isdigit():
            raise _mc_invalid("offset: a non-negative integer")
        status = get("status")
        if status is not None and status not in MEMBER_STATUSES:
            raise _mc_invalid(f"status: one of {sorted(MEMBER_STATUSES)}")
        if get("unsubscribed_since") is not None and status != "unsubscribed":
            raise _mc_invalid("unsubscribed_since needs status=unsubscribed")
        if (get("sort_field") or "last_changed") not in MEMBER_SORTS or (get("sort_dir") or "ASC") not in (
            "ASC",
            "DESC",
        ):
            raise _mc_invalid("sort_field or sort_dir")
        since = get("since_last_changed")
        before = get("before_last_changed")
        low = _iso_with_offset(since, "since_last_changed") if since else None
        high = _iso_with_offset(before, "before_last_changed") if before else None
        rows = self._rows(list_id, members, status)
        first = 0 if low is None else bisect.bisect_right(rows, low, key=lambda r: r[0])  # both bounds exclusive
        last = len(rows) if high is None else bisect.bisect_left(rows, high, key=lambda r: r[0])
        rows = rows[first:last]
        if get("sort_dir") == "DESC":
            rows.reverse()
        offset, count = int(offset_text), int(count_text)
        page = [
            {
                "id": hashlib.md5(email.encode()).hexdigest(),
                "email_address": email,
                "status": member_status,
                "last_changed": _iso(changed),
                "unsubscribe_reason": self.reasons.get((list_id, email), ""),
                "timestamp_opt": _iso(changed),
                "list_id": list_id,
            }
            for changed, email, member_status in rows[offset : offset + count]
        ]
        fields = get("fields")
        if fields:
            keep = {f.removeprefix("members.") for f in fields.split(",") if f.startswith("members.")}
            page = [{k: v for k, v in m.items() if k in keep} for m in page]
            answer: dict[str, Any] = {"members": page}
            if "total_items" in fields.split(","):
                answer["total_items"] = len(rows)
            return answer
        return {"members": page, "list_id": list_id, "total_items": len(rows), "_links": []}

    def _rows(self: Any, list_id: str, members: dict[str, str], status: str | None) -> list[tuple[float, str, str]]:
        """A list's members of ``status`` as (last_changed, email, status), oldest first; sorted
        once per state of the fake, so paging through a large list stays cheap."""
        key = (self.version, len(members))
        cached = self._sorted.get((list_id, status))
        if cached is None or cached[0] != key:
            rows = sorted(
                (self.last_changed.get((list_id, email), 0.0), email, member_status)
                for email, member_status in members.items()
                if status is None or member_status == status
            )
            cached = self._sorted[(list_id, status)] = (key, rows)
        return cached[1]


class FakeMailchimp(_MailchimpMembers, FakeAPI):
    """Marketing API 3.0: ping, lists, the list batch call, member PATCH."""

    provider = "mailchimp"

    def __init__(self, lists: tuple[str, ...] = ("list1", "list2")) -> None:
        self.members: dict[str, dict[str, str]] = {list_id: {} for list_id in lists}  # list -> lower(email) -> status
        self.forgotten: set[str] = set()  # addresses deleted for good ("Forgotten Email Not Subscribed")
        self.rejected_addresses: set[str] = set()  # addresses the batch call refuses ("Invalid Resource")
        self.last_changed: dict[tuple[str, str], float] = {}  # (list, lower(email)) -> time of the last change
        self.reasons: dict[tuple[str, str], str] = {}  # (list, lower(email)) -> unsubscribe_reason
        self.version = 0  # bumped by every change, so member pages are sorted once per state
        self.connection_limit = 10  # Mailchimp's simultaneous connections per user; past it, a 429
        self._connections = 0
        self._sorted: dict[tuple[str, str | None], tuple[Any, list[tuple[float, str, str]]]] = {}
        super().__init__()

    # "In Mailchimp's UI": changes that fire no webhook ------------------------------------------

    def ui_set(
        self, list_id: str, emails: Iterable[str], status: str, *, at: float | None = None, reason: str = ""
    ) -> None:
        """Members set to ``status`` in the UI (or by another integration), changed at ``at``."""
        with self._lock:
            when = time.time() if at is None else at
            self.version += 1
            for email in emails:
                self.members[list_id][email.lower()] = status
                self.last_changed[(list_id, email.lower())] = when
                if reason:
                    self.reasons[(list_id, email.lower())] = reason

    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], Any]:
        """Mailchimp allows ten simultaneous connections per user: more get a 429 without
        rate-limit headers."""
        with self._lock:
            self._connections += 1
            over = self._connections > self.connection_limit
        try:
            if over:
                return (
                    429,
                    {},
                    {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": "too many"},
                )
            return super().serve(method, target, headers, raw)
        finally:
            with self._lock:
                self._connections -= 1

    def check_auth(self, authorization: str) -> None:
        scheme, _, encoded = authorization.partition(" ")
        try:
            _user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            password = ""
        if scheme != "Basic" or password != MAILCHIMP_KEY:
            raise Reject(
                401,
                {
                    "type": "about:blank",
                    "title": "API Key Invalid",
                    "status": 401,
                    "detail": "Your API key may be invalid.",
                },
                unexpected=False,
            )

    def global_optouts(self) -> set[str]:
        """Unsubscribed from every list."""
        return set.intersection(*({e for e, st in m.items() if st == "unsubscribed"} for m in self.members.values()))

    def _list(self, list_id: str) -> dict[str, str]:
        if list_id not in self.members:
            raise Reject(
                404,
                {"title": "Resource Not Found", "status": 404, "detail": "The requested resource could not be found."},
                unexpected=False,
            )
        return self.members[list_id]

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/3.0/ping" and body is None:
            return 200, {"health_status": "Everything's Chimpy!"}
        if parts[:2] == ["3.0", "lists"] and len(parts) == 3:
            members = self._list(parts[2])
            if method == "GET" and body is None:
                return 200, {"id": parts[2], "name": f"List {parts[2]}"}
            if (
                method == "POST"
                and query == {}
                and isinstance(body, dict)
                and set(body) == {"members", "update_existing"}
                and body["update_existing"] is True
            ):
                return 200, self._batch(members, body["members"])
        if parts[:2] == ["3.0", "lists"] and len(parts) == 5 and parts[3] == "members" and method == "PATCH":
            members = self._list(parts[2])
            if body != {"status": "pending"}:
                raise Reject(400, {"title": "Invalid Resource", "status": 400, "detail": "unexpected body"})
            match = next((e for e in members if hashlib.md5(e.encode()).hexdigest() == parts[4]), None)
            if match is None:
                raise Reject(
                    404,
                    {
                        "title": "Resource Not Found",
                        "status": 404,
                        "detail": "The requested resource could not be found.",
                    },
                    unexpected=False,
                )
            members[match] = "pending"
            self.last_changed[(parts[2], match)] = time.time()
            self.version += 1
            return 200, {"email_address": match, "status": "pending"}
        if parts[:2] == ["3.0", "lists"] and len(parts) == 4 and parts[3] == "members" and method == "GET":
            return 200, self._members_page(parts[2], query)
        raise Reject(404, {"title": "Resource Not Found", "status": 404, "detail": f"no route {method} {path}"})

    def _batch(self, members: dict[str, str], batch: Any) -> dict[str, Any]:
        if not isinstance(batch, list) or not 1 <= len(batch) <= 500:
            raise Reject(400, {"title": "Invalid Resource", "status": 400, "detail": "members: 1 to 500 items"})
        created, updated, errors = [], [], []
        for member in batch:
            if (
                not isinstance(member, dict)
                or set(member) != {"email_address", "status"}
                or member["status"] != "unsubscribed"
                or "@" not in str(member["email_address"])
            ):
                raise Reject(400, {"title": "Invalid Resource", "status": 400, "detail": f"bad member {member!r}"})
            address = member["email_address"].lower()
            if address in self.forgotten:
                errors.append(
                    {
                        "email_address": member["email_address"],
                        "error": f"{member['email_address']} was permanently deleted and cannot be re-imported."
                        " Forgotten Email Not Subscribed",
                        "error_code": "ERROR_GENERIC",
                        "field": "",
                        "field_message": "",
                    }
                )
            elif address in self.rejected_addresses:
                errors.append(
                    {
                        "email_address": member["email_address"],
                        "error": "Invalid Resource",
                        "error_code": "ERROR_GENERIC",
                        "field": "email_address",
                        "field_message": "looks fake",
                    }
                )
            else:
                (updated if address in members else created).append(
                    {"email_address": member["email_address"], "status": "unsubscribed"}
                )
                if members.get(address) != "unsubscribed":
                    list_id = next(k for k, v in self.members.items() if v is members)
                    self.last_changed[(list_id, address)] = time.time()
                    self.version += 1
                members[address] = "unsubscribed"
        return {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
        }


SUPPRESSION_KINDS = ("unsubscribes", "spam_reports", "bounces", "blocks", "invalid_emails")


class FakeSendGrid(FakeAPI):
    """v3: scopes, unsubscribe groups, global and group suppressions."""

    provider = "sendgrid"

    def __init__(self, groups: tuple[int, ...] = (1234,)) -> None:
        self.groups = set(groups)
        self.scopes = ["asm.suppressions.global.create", "asm.groups.suppressions.create", "asm.groups.read"]
        self.global_suppressions: set[str] = set()
        self.group_suppressions: dict[int, set[str]] = {g: set() for g in groups}
        # The time-filtered suppression lists: kind -> lower(email) -> record. "unsubscribes" is
        # global_suppressions; ``created`` holds its records' creation times.
        self.lists: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in SUPPRESSION_KINDS if k != "unsubscribes"}
        self.created: dict[str, int] = {}
        self.version = 0  # bumped by every change, so suppression pages are sorted once per state
        self._sorted: dict[str, tuple[Any, list[tuple[int, str]]]] = {}
        self.rate_limit = 0  # requests per second to /v3/suppression (0: none); past it, 429 until the reset
        self._window = (0, 0)  # (second, requests in it)
        super().__init__()

    def global_optouts(self) -> set[str]:
        return set(self.global_suppressions)

    # "In SendGrid's UI": changes that fire no webhook --------------------------------------------

    def ui_add(self, kind: str, emails: Iterable[str], *, created: int | None = None, reason: str = "") -> None:
        """Add addresses to a suppression list (``unsubscribes``, ``spam_reports``, ``bounces``…)."""
        with self._lock:
            when = int(time.time()) if created is None else created
            self.version += 1
            for email in emails:
                if kind == "unsubscribes":
                    self.global_suppressions.add(email.lower())
                    self.created[email.lower()] = when
                else:
                    record: dict[str, Any] = {"created": when, "email": email.lower()}
                    record.update(
                        {"spam_reports": {"ip": "10.63.202.100"}}.get(kind, {"reason": reason or "550 5.1.1"})
                    )
                    if kind == "bounces":
                        record["status"] = "5.1.1"
                    self.lists[kind][email.lower()] = record

    def ui_group(self, group: int, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Add addresses to, or remove them from, an unsubscribe group."""
        with self._lock:
            self.group_suppressions[group].update(e.lower() for e in add)
            self.group_suppressions[group].difference_update(e.lower() for e in remove)

    def check_auth(self, authorization: str) -> None:
        _bearer(authorization, SENDGRID_KEY, {"errors": [{"field": None, "message": "authorization required"}]})

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/v3/scopes" and body is None:
            return 200, {"scopes": self.scopes}
        if method == "POST" and path == "/v3/asm/suppressions/global":
            emails = self._recipients(body)
            self.version += 1
            for e in emails:
                if e.lower() not in self.global_suppressions:
                    self.created[e.lower()] = int(time.time())
            self.global_suppressions.update(e.lower() for e in emails)
            return 201, {"recipient_emails": emails}
        if method == "GET" and parts[:2] == ["v3", "suppression"] and len(parts) == 3 and body is None:
            return self._suppression_page(parts[2], query)
        if (
            method == "DELETE"
            and parts[:4] == ["v3", "asm", "suppressions", "global"]
            and len(parts) == 5
            and body is None
        ):
            self.global_suppressions.discard(parts[4].lower())
            self.version += 1
            return 204, None
        if parts[:3] == ["v3", "asm", "groups"] and len(parts) >= 4 and parts[3].isdigit():
            group = int(parts[3])
            if method == "GET" and len(parts) == 4 and body is None:
                if group not in self.groups:
                    raise Reject(404, {"errors": [{"field": None, "message": "not found"}]}, unexpected=False)
                return 200, {"id": group, "name": f"Group {group}", "description": ""}
            if method == "GET" and parts[4:] == ["suppressions"] and body is None:
                if group not in self.groups:
                    raise Reject(404, {"errors": [{"field": None, "message": "not found"}]}, unexpected=False)
                return 200, sorted(self.group_suppressions[group])
            if method == "POST" and parts[4:] == ["suppressions"]:
                emails = self._recipients(body)
                # As documented: a group that does not exist quietly means the global list.
                target = self.group_suppressions[group] if group in self.groups else self.global_suppressions
                target.update(e.lower() for e in emails)
                return 201, {"recipient_emails": emails}
            if method == "DELETE" and len(parts) == 6 and parts[4] == "suppressions" and body is None:
                self.group_suppressions.get(group, set()).discard(parts[5].lower())
                return 204, None
        raise Reject(404, {"errors": [{"field": None, "message": f"no route {method} {path}"}]})

    def _suppression_page(self, kind: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """``GET /v3/suppression/{kind}``: creation-time window (inclusive), newest first, offset
        paging with SendGrid's ``Link`` header and rate-limit headers."""
        if kind not in SUPPRESSION_KINDS:
            raise Reject(404, {"errors": [{"field": None, "message": f"no route GET /v3/suppression/{kind}"}]})
        self._rate()
        unknown = set(query) - {"start_time", "end_time", "limit", "offset", "email"}
        if unknown:
            raise Reject(400, {"errors": [{"field": sorted(unknown)[0], "message": "unknown parameter"}]})
        numbers = {}
        for name, default, low, high in (
            ("start_time", 0, 0, 2**40),
            ("end_time", 2**40, 0, 2**40),
            ("limit", 50, 1, 500),
            ("offset", 0, 0, 2**40),
        ):
            text = _one(query, name, lambda m, name=name: Reject(400, {"errors": [{"field": name, "message": m}]}))
            if text is not None and not text.isdigit():
                raise Reject(400, {"errors": [{"field": name, "message": "must be an integer"}]})
            numbers[name] = default if text is None else int(text)
            if not low <= numbers[name] <= high:
                raise Reject(400, {"errors": [{"field": name, "message": f"must be between {low} and {high}"}]})
        prefix = (
            _one(query, "email", lambda m: Reject(400, {"errors": [{"field": "email", "message": m}]})) or ""
        ).lower()
        rows = self._rows(kind)
        first = bisect.bisect_left(rows, numbers["start_time"], key=lambda r: r[0])  # both bounds inclusive
        last = bisect.bisect_right(rows, numbers["end_time"], key=lambda r: r[0])
        window = rows[first:last]
        window.reverse()  # newest first
        if prefix:
            window = [r for r in window if r[1].startswith(prefix)]
        chosen = window
        limit, offset = numbers["limit"], numbers["offset"]
        base = f"{self.url}/v3/suppression/{kind}?limit={limit}&offset="
        last = max(len(chosen) - 1, 0) // limit * limit
        links = []
        if offset + limit < len(chosen):
            links.append(f'<{base}{offset + limit}>; rel="next"; title="{offset // limit + 2}"')
        links.append(f'<{base}{max(offset - limit, 0)}>; rel="prev"; title="{max(offset // limit, 1)}"')
        links.append(f'<{base}{last}>; rel="last"; title="{last // limit + 1}"')
        links.append(f'<{base}0>; rel="first"; title="1"')
        self.headers["Link"] = ", ".join(links)
        page = []
        for created, email in chosen[offset : offset + limit]:
            record = self.lists[kind][email] if kind != "unsubscribes" else {"created": created, "email": email}
            page.append(record)
        return 200, page

    def _rows(self, kind: str) -> list[tuple[int, str]]:
        """A list's records as (created, email), oldest first, sorted once per state of the fake."""
        source: Any = self.global_suppressions if kind == "unsubscribes" else self.lists[kind]
        key = (self.version, len(source))
        cached = self._sorted.get(kind)
        if cached is None or cached[0] != key:
            if kind == "unsubscribes":
                rows = sorted((self.created.get(e, 0), e) for e in source)
            else:
                rows = sorted((r["created"], e) for e, r in source.items())
            cached = self._sorted[kind] = (key, rows)
        return cached[1]

    def _rate(self) -> None:
        """``X-RateLimit-*`` on every suppression read; past ``rate_limit`` a 429 until the reset."""
        if not self.rate_limit:
            return
        second = int(time.time())
        used = self._window[1] + 1 if self._window[0] == second else 1
        self._window = (second, used)
        headers = {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - used, 0)),
            "X-RateLimit-Reset": str(second + 1),
        }
        if used > self.rate_limit:
            raise Reject(
                429, {"errors": [{"field": None, "message": "too many requests"}]}, unexpected=False, headers=headers
            )
        self.headers.update(headers)

    @staticmethod
    def _recipients(body: Any) -> list[str]:
        if not isinstance(body, dict) or set(body) != {"recipient_emails"}:
            raise Reject(400, {"errors": [{"field": "recipient_emails", "message": "required, and nothing else"}]})
        return _strings(body["recipient_emails"], "recipient_emails")


class FakeHubSpot(FakeAPI):
    """Communication preferences (v3 definitions, subscribe/unsubscribe; v4 batch
    unsubscribe-all) and the contacts batch read."""

    provider = "hubspot"

    def __init__(
        self,
        subscriptions: tuple[str, ...] = ("5678",),
        *,
        token: str = HUBSPOT_TOKEN,
        contacts: dict[str, str] | None = None,
    ) -> None:
        self.token = token
        self.subscriptions = set(subscriptions)
        self.unsubscribed_all: set[str] = set()
        self.unsubscribed: dict[str, set[str]] = {s: set() for s in subscriptions}  # subscription -> addresses
        self.contacts: dict[str, str] = dict(contacts or {})  # contact id -> email
        self.subscribed: dict[str, set[str]] = {s: set() for s in subscriptions}  # subscription -> addresses
        self.modified: dict[str, float] = {}  # contact id -> lastmodifieddate (epoch seconds)
        self.status_times: dict[tuple[str, str], float] = {}  # (lower(email), subscription or "all") -> time
        self.searches: list[float] = []  # times of recent search calls (5 a second at most)
        self._by_email: dict[str, str] = {}  # lower(email) -> contact id, for the UI hooks
        super().__init__()

    def global_optouts(self) -> set[str]:
        return set(self.unsubscribed_all)

    # "In HubSpot's UI": changes that fire no webhook ---------------------------------------------

    def ui_contact(self, email: str) -> str:
        """The contact id of ``email``, created if there is none."""
        for contact_id, address in self.contacts.items():
            if address.lower() == email.lower():
                return contact_id
        contact_id = str(100_000 + len(self.contacts))
        self.contacts[contact_id] = email.lower()
        self.modified[contact_id] = time.time()
        return contact_id

    def ui_status(
        self,
        emails: Iterable[str],
        subscription: str = "all",
        *,
        status: str = "UNSUBSCRIBED",
        contact: bool = True,
        at: float | None = None,
    ) -> None:
        """Set a subscription status (``all``: unsubscribed from all email) in the UI; with
        ``contact``, the address has a contact, whose ``lastmodifieddate`` moves."""
        with self._lock:
            if len(self._by_email) != len(self.contacts):
                self._by_email = {a.lower(): i for i, a in self.contacts.items()}
            ids = self._by_email
            when = time.time() if at is None else at
            for email in emails:
                address = email.lower()
                self._set_status(address, subscription, status, when, touch=False)
                if contact:
                    contact_id = ids.get(address)
                    if contact_id is None:
                        contact_id = ids[address] = str(100_000 + len(self.contacts))
                        self.contacts[contact_id] = address
                    self.modified[contact_id] = when

    def _set_status(self, address: str, subscription: str, status: str, when: float, *, touch: bool = True) -> None:
        if subscription == "all":
            (self.unsubscribed_all.add if status == "UNSUBSCRIBED" else self.unsubscribed_all.discard)(address)
        else:
            (
                self.unsubscribed[subscription].add
                if status == "UNSUBSCRIBED"
                else self.unsubscribed[subscription].discard
            )(address)
            (self.subscribed[subscription].add if status == "SUBSCRIBED" else self.subscribed[subscription].discard)(
                address
            )
        self.status_times[(address, subscription)] = when
        for contact_id, email in self.contacts.items() if touch else ():
            if email.lower() == address:
                self.modified[contact_id] = when

    def check_auth(self, authorization: str) -> None:
        _bearer(
            authorization,
            self.token,
            {
                "status": "error",
                "message": "Authentication credentials not found.",
                "category": "INVALID_AUTHENTICATION",
            },
        )

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/communication-preferences/v3/definitions" and body is None:
            return 200, {
                "subscriptionDefinitions": [
                    {"id": s, "name": f"Subscription {s}", "isActive": True} for s in sorted(self.subscriptions)
                ]
            }
        if method == "POST" and path == "/communication-preferences/v4/statuses/batch/unsubscribe-all":
            if query != {"channel": ["EMAIL"]}:
                raise Reject(
                    400, {"status": "error", "message": "channel=EMAIL is required", "category": "VALIDATION_ERROR"}
                )
            if not isinstance(body, dict) or set(body) != {"inputs"}:
                raise Reject(400, {"status": "error", "message": "inputs required", "category": "VALIDATION_ERROR"})
            results = []
            for address in _strings(body["inputs"], "inputs", limit=100):
                reason = (
                    "NO_STATUS_CHANGE" if address.lower() in self.unsubscribed_all else "UNSUBSCRIBE_FROM_ALL_OCCURRED"
                )
                if address.lower() not in self.unsubscribed_all:
                    self._set_status(address.lower(), "all", "UNSUBSCRIBED", time.time())
                results.append(
                    {
                        "subscriberIdString": address,
                        "statuses": [
                            {
                                "subscriptionId": int(s),
                                "status": "NOT_SUBSCRIBED",
                                "channel": "EMAIL",
                                "setStatusSuccessReason": reason,
                            }
                            for s in sorted(self.subscriptions)
                        ],
                    }
                )
            return 200, {
                "status": "COMPLETE",
                "results": results,
                "startedAt": "2026-11-24T12:00:00Z",
                "completedAt": "2026-11-24T12:00:00Z",
            }
        if (
            method == "POST"
            and path.startswith("/communication-preferences/v4/statuses/")
            and path.endswith("/unsubscribe-all")
            and path.count("/") == 5
        ):
            address = path.split("/")[4]
            if query != {"channel": ["EMAIL"]} or body is not None or "@" not in address:
                raise Reject(
                    400, {"status": "error", "message": "channel=EMAIL and no body", "category": "VALIDATION_ERROR"}
                )
            self.unsubscribed_all.add(address.lower())
            return 200, {"status": "COMPLETE", "results": [{"subscriberIdString": address, "statuses": []}]}
        if method == "POST" and path in (
            "/communication-preferences/v3/unsubscribe",
            "/communication-preferences/v3/subscribe",
        ):
            if (
                not isinstance(body, dict)
                or not {"emailAddress", "subscriptionId"} <= set(body)
                or not set(body) <= {"emailAddress", "subscriptionId", "legalBasis", "legalBasisExplanation"}
            ):
                raise Reject(
                    400,
                    {
                        "status": "error",
                        "message": "Cannot build PublicUpdateSubscriptionStatusRequest,"
                        " some of required attributes are not set",
                        "category": "VALIDATION_ERROR",
                    },
                )
            address, subscription = body["emailAddress"], body["subscriptionId"]
            if not isinstance(subscription, str) or subscription not in self.subscriptions or "@" not in str(address):
                raise Reject(
                    400,
                    {
                        "status": "error",
                        "message": f"bad subscriptionId {subscription!r}",
                        "category": "VALIDATION_ERROR",
                    },
                )
            members = self.unsubscribed[subscription]
            unsubscribe = path.endswith("/unsubscribe")
            if (address.lower() in members) == unsubscribe:
                verb = "unsubscribed" if unsubscribe else "subscribed"
                raise Reject(
                    400,
                    {
                        "status": "error",
                        "message": f"{address} is already {verb} from subscription {subscription}",
                        "category": "VALIDATION_ERROR",
                    },
                    unexpected=False,
                )
            self._set_status(
                address.lower(), subscription, "UNSUBSCRIBED" if unsubscribe else "SUBSCRIBED", time.time()
            )
            return 200, {
                "id": subscription,
                "name": f"Subscription {subscription}",
                "status": "NOT_SUBSCRIBED" if unsubscribe else "SUBSCRIBED",
                "sourceOfStatus": "SUBSCRIPTION_STATUS",
            }
        if method == "POST" and path == CONTACTS_BATCH_READ:
            return self.read_contacts(body)
        if method == "POST" and path == "/crm/v3/objects/contacts/search":
            return 200, self._search(body)
        if method == "POST" and path in (
            "/communication-preferences/v4/statuses/batch/read",
            "/communication-preferences/v4/statuses/batch/unsubscribe-all/read",
        ):
            return self._status_read(path.endswith("unsubscribe-all/read"), query, body)
        raise _no_route(method, path)

    def _search(self, body: Any) -> dict[str, Any]:
        """The contacts search, validated as HS-SEARCH documents; 5 calls a second at most."""
        now = time.time()
        self.searches = [t for t in self.searches if now - t < 1.0]
        if len(self.searches) >= 5:
            raise Reject(
                429,
                {
                    "status": "error",
                    "message": "You have reached your secondly limit.",
                    "errorType": "RATE_LIMIT",
                    "policyName": "SECONDLY",
                    "category": "RATE_LIMITS",
                },
                unexpected=False,
            )
        self.searches.append(now)
        invalid = lambda m: Reject(400, {"status": "error", "message": m, "category": "VALIDATION_ERROR"})  # noqa: E731
        if not isinstance(body, dict) or not set(body) <= {
            "filterGroups",
            "sorts",
            "properties",
            "limit",
            "after",
            "query",
        }:
            raise invalid("unknown fields")
        if len(json.dumps(body)) > 3000:
            raise invalid("the query is over 3000 characters")
        groups = body.get("filterGroups", [])
        if not isinstance(groups, list) or len(groups) > 5 or sum(len(g.get("filters", [])) for g in groups) > 18:
            raise invalid("at most 5 filterGroups, 6 filters each, 18 in all")
        for group in groups:
            filters = group.get("filters")
            if not isinstance(filters, list) or len(filters) > 6:
                raise invalid("filters: at most 6 per group")
            for f in filters:
                if f.get("operator") not in SEARCH_OPERATORS or not isinstance(f.get("propertyName"), str):
                    raise invalid(f"bad filter {f!r}")
        sorts = body.get("sorts", [])
        if (
            not isinstance(sorts, list)
            or len(sorts) > 1
            or any(s.get("direction") not in ("ASCENDING", "DESCENDING") for s in sorts)
        ):
            raise invalid("sorts: at most one, ASCENDING or DESCENDING")
        limit, after = body.get("limit", 10), body.get("after", "0")
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            raise invalid("limit: 1 to 200")
        if not isinstance(after, str) or not after.isdigit():
            raise invalid("after: a numeric string")
        if int(after) + limit > 10_000:
            raise invalid("paging beyond 10,000 results is not supported")
        rows = [(self._properties(i), i) for i in self.contacts]
        rows = [(p, i) for p, i in rows if not groups or any(all(_matches(p, f) for f in g["filters"]) for g in groups)]
        if sorts:
            name = sorts[0]["propertyName"]
            rows.sort(
                key=lambda r: (_sort_key(r[0].get(name)), int(r[1])), reverse=sorts[0]["direction"] == "DESCENDING"
            )
        else:
            rows.sort(key=lambda r: int(r[1]))
        start = int(after)
        wanted = set(body.get("properties") or []) | {
            "email",
            "firstname",
            "lastname",
            "createdate",
            "lastmodifieddate",
            "hs_object_id",
        }
        results = [
            {
                "id": i,
                "properties": {k: v for k, v in p.items() if k in wanted},
                "createdAt": p["createdate"],
                "updatedAt": p["lastmodifieddate"],
                "archived": False,
            }
            for p, i in rows[start : start + limit]
        ]
        answer: dict[str, Any] = {"total": len(rows), "results": results}
        if start + limit < len(rows):
            answer["paging"] = {"next": {"after": str(start + limit), "link": f"?after={start + limit}"}}
        return answer

    def _properties(self, contact_id: str) -> dict[str, Any]:
        email = self.contacts[contact_id].lower()
        modified = datetime.fromtimestamp(self.modified.get(contact_id, 0.0), tz=UTC)
        props = {
            "email": email,
            "hs_object_id": contact_id,
            "firstname": None,
            "lastname": None,
            "createdate": "2026-01-01T00:00:00.000Z",
            "lastmodifieddate": modified.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "hs_email_optout": "true" if email in self.unsubscribed_all else "false",
        }
        for sub, members in self.unsubscribed.items():
            props[f"hs_email_optout_{sub}"] = "true" if email in members else "false"
        return props

    def _status_read(self, wide: bool, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        """The v4 batch reads (statuses, or unsubscribed-from-all): 1 to 100 inputs, channel=EMAIL."""
        if query != {"channel": ["EMAIL"]}:
            raise Reject(
                400, {"status": "error", "message": "channel=EMAIL is required", "category": "VALIDATION_ERROR"}
            )
        if not isinstance(body, dict) or set(body) != {"inputs"}:
            raise Reject(400, {"status": "error", "message": "inputs required", "category": "VALIDATION_ERROR"})
        results = []
        for address in _strings(body["inputs"], "inputs", limit=100):
            email = address.lower()
            if wide:
                statuses = (
                    [
                        {
                            "channel": "EMAIL",
                            "status": "UNSUBSCRIBED",
                            "subscriberIdString": email,
                            "timestamp": _iso_ms(self.status_times.get((email, "all"), 0.0)),
                            "wideStatusType": "PORTAL_WIDE",
                        }
                    ]
                    if email in self.unsubscribed_all
                    else []
                )
                results.append({"subscriberIdString": email, "wideStatuses": statuses})
                continue
            entries = []
            for sub in sorted(self.subscriptions):
                status = (
                    "UNSUBSCRIBED"
                    if email in self.unsubscribed[sub]
                    else "SUBSCRIBED"
                    if email in self.subscribed[sub]
                    else "NOT_SPECIFIED"
                )
                entries.append(
                    {
                        "subscriptionId": int(sub),
                        "subscriptionName": f"Subscription {sub}",
                        "channel": "EMAIL",
                        "status": status,
                        "source": "PORTAL",
                        "timestamp": _iso_ms(self.status_times.get((email, sub), 0.0)),
                    }
                )
            results.append({"subscriberIdString": email, "statuses": entries})
        stamp = "2026-11-24T12:00:00Z"
        return 200, {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}

    def read_contacts(self, body: Any) -> tuple[int, Any]:
        """The contacts batch read: 200, or 207 with ``errors[]`` naming the unknown ids."""
        try:
            ids = [i["id"] for i in body["inputs"]]
            well_formed = (
                set(body) <= {"properties", "propertiesWithHistory", "inputs"}
                and body["properties"] == ["email"]
                and body.get("propertiesWithHistory", []) == []
                and 0 < len(ids) <= 100
                and all(isinstance(i, str) and i.isdigit() for i in ids)
            )
        except (KeyError, TypeError):
            well_formed = False
        if not well_formed:
            raise Reject(400, {"status": "error", "message": f"bad body {body!r:.200}", "category": "VALIDATION_ERROR"})
        found = [
            {"id": i, "properties": {"email": self.contacts[i], "hs_object_id": i}, "archived": False}
            for i in ids
            if i in self.contacts
        ]
        missing = [i for i in ids if i not in self.contacts]
        if not missing:
            return 200, {"status": "COMPLETE", "results": found}
        error = {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects",
            "context": {"ids": missing},
        }
        return 207, {"status": "COMPLETE", "results": found, "numErrors": 1, "errors": [error]}


class FakeContactsAPI(FakeHubSpot):
    """HubSpot's contacts batch read alone (any other route is a 404), for ``token``. It can be
    down for its first ``down_for`` calls: ``down_status`` (503, or 429 with ``Retry-After``)."""

    def __init__(self, token: str, contacts: dict[str, str], *, down_for: int = 0, down_status: int = 503) -> None:
        super().__init__(token=token, contacts=contacts)
        self.fail_next(
            down_status,
            times=down_for,
            retry_after="30" if down_status == 429 else None,
            body={"status": "error", "message": "down"},
        )

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "POST" and path == CONTACTS_BATCH_READ:
            return self.read_contacts(body)
        raise _no_route(method, path)


SEARCH_OPERATORS = frozenset(
    {
        "LT",
        "LTE",
        "GT",
        "GTE",
        "EQ",
        "NEQ",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)


def _iso_ms(when: float) -> str:
    return datetime.fromtimestamp(when, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sort_key(value: Any) -> Any:
    """Dates compare as times, everything else as text."""
    if isinstance(value, str) and value.endswith("Z"):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return str(value)


def _matches(props: dict[str, Any], f: dict[str, Any]) -> bool:
    """One search filter on a contact's properties (dates as epoch ms or ISO 8601)."""
    value, op = props.get(f["propertyName"]), f["operator"]
    if op == "HAS_PROPERTY":
        return value is not None
    if op == "NOT_HAS_PROPERTY":
        return value is None
    wanted = f.get("value")
    if f["propertyName"] == "lastmodifieddate" or f["propertyName"] == "createdate":
        have = _sort_key(value) * 1000

        def ms(v: Any) -> float:
            text = str(v)
            return float(text) if text.isdigit() else _sort_key(text if text.endswith("Z") else text + "Z") * 1000

        if op == "BETWEEN":
            return ms(wanted) <= have <= ms(f.get("highValue"))
        target = ms(wanted)
        return {
            "LT": have < target,
            "LTE": have <= target,
            "GT": have > target,
            "GTE": have >= target,
            "EQ": have == target,
            "NEQ": have != target,
        }.get(op, False)
    if op in ("IN", "NOT_IN"):
        return (str(value) in [str(v) for v in f.get("values") or []]) == (op == "IN")
    if op == "EQ":
        return str(value).lower() == str(wanted).lower()
    if op == "NEQ":
        return str(value).lower() != str(wanted).lower()
    return False


def _no_route(method: str, path: str) -> Reject:
    return Reject(404, {"status": "error", "message": f"no route {method} {path}", "category": "OBJECT_NOT_FOUND"})


class FakeProviders:
    """The three fakes together."""

    def __init__(self, mailchimp: FakeMailchimp, sendgrid: FakeSendGrid, hubspot: FakeHubSpot) -> None:
        self.mailchimp = mailchimp
        self.sendgrid = sendgrid
        self.hubspot = hubspot

    @classmethod
    def start(cls) -> FakeProviders:
        return cls(FakeMailchimp(), FakeSendGrid(), FakeHubSpot())

    def __getitem__(self, slug: str) -> FakeAPI:
        return getattr(self, slug)

    def url(self, slug: str) -> str:
        return self[slug].url

    def all(self) -> tuple[FakeAPI, ...]:
        return (self.mailchimp, self.sendgrid, self.hubspot)

    def calls(self) -> int:
        return sum(len(f.calls) for f in self.all())

    def globally_suppressed(self, slug: str) -> set[str]:
        return self[slug].globally_suppressed()

    def unexpected(self) -> list[str]:
        return [u for f in self.all() for u in f.unexpected]

    def close(self) -> None:
        for fake in self.all():
            fake.close()


# --- Constant Contact (v3) ------------------------------------------------------------------

CC_CLIENT_ID = "cc-client-id-0123456789"
CC_CLIENT_SECRET = "cc-client-secret-0123456789"
CC_TOKEN_PATH = "/oauth2/default/v1/token"
CC_AUTHORIZE_PATH = "/oauth2/default/v1/authorize"
CC_STATUSES = {"all", "active", "deleted", "not_set", "pending_confirmation", "temp_hold", "unsubscribed"}
CC_INCLUDES = {"custom_fields", "list_memberships", "phone_numbers", "street_addresses", "taggings", "notes"}
CC_CORE = ("first_name", "last_name", "job_title", "company_name", "birthday_month", "birthday_day", "anniversary")
CC_SUBRESOURCES = ("custom_fields", "phone_numbers", "street_addresses", "list_memberships", "taggings", "notes")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _cc_errors(status: int, key: str, message: str, *, unexpected: bool = True) -> Reject:
    return Reject(status, [{"error_key": key, "error_message": message}], unexpected=unexpected)


def _cc_iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class FakeConstantContact(FakeAPI):
    """Constant Contact v3 as ``providers-pull.md`` §5.1 specifies it: the OAuth2 token and
    authorize endpoints (rotating refresh tokens by default: each refresh kills every earlier
    one, and reusing one answers ``invalid_grant``), the contacts routes with full-replace
    PUTs, list removal activities, the one-time resubscribe mail, 4 requests a second and a
    daily quota (429 ``throttled`` / ``quota_exceeded``, no rate-limit headers).

    Hooks change things "in the UI", with no webhook: :meth:`add_contact`,
    :meth:`unsubscribe_in_ui`, :meth:`delete_in_ui`. ``now`` is the fake's clock (opt-out
    dates, the quota's day); ``token_delay`` slows the token endpoint to widen races.
    """

    provider = "constant_contact"

    def __init__(
        self,
        lists: tuple[str, ...] = ("1f0a8f5c-0000-4000-8000-000000000001", "1f0a8f5c-0000-4000-8000-000000000002"),
        *,
        rotating: bool = True,
        daily_quota: int = 10_000,
        per_second: int | None = 4,
        access_lifetime: float = 86_400,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        optout_filter_works: bool = True,
    ) -> None:
        self.lists = set(lists)
        self.contacts: dict[str, dict[str, Any]] = {}
        self.activities: dict[str, dict[str, Any]] = {}
        self.resubscribe_sent: set[str] = set()
        self.rotating = rotating
        self.daily_quota = daily_quota
        self.per_second = per_second
        self.access_lifetime = access_lifetime
        self.now = now
        self.optout_filter_works = optout_filter_works
        self.token_delay = 0.0
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}  # token -> expiry (epoch seconds, the fake's clock)
        self.codes: dict[str, tuple[str, float]] = {}  # code -> (redirect_uri, expiry)
        self.token_grants: list[str] = []  # grant types answered 200, in order
        self.invalid_grants = 0
        self.used_today: dict[str, int] = {}
        self._recent: collections.deque[float] = collections.deque()
        self._cursors: dict[str, tuple[list[str], int, int, set[str]]] = {}
        self._rate_lock = threading.Lock()
        self.initial_refresh_token = self._new_refresh_token()
        super().__init__()

    # Test hooks --------------------------------------------------------------------------

    def add_contact(self, address: str, **fields: Any) -> str:
        """A contact as someone created it in the UI (mailable, ``explicit``)."""
        contact_id = str(uuid.uuid4())
        stamp = _cc_iso(self.now())
        permission = fields.pop("permission_to_send", "explicit")
        self.contacts[contact_id] = {
            "contact_id": contact_id,
            "email_address": {
                "address": address,
                "permission_to_send": permission,
                "created_at": stamp,
                "updated_at": stamp,
                "opt_in_source": "Account",
                "opt_in_date": stamp,
                "confirm_status": "off",
            },
            **{f: None for f in CC_CORE},
            "create_source": "Account",
            "created_at": stamp,
            "updated_at": stamp,
            "list_memberships": [],
            "custom_fields": [],
            "phone_numbers": [],
            "street_addresses": [],
            **fields,
        }
        return contact_id

    def find(self, address: str) -> dict[str, Any] | None:
        return next(
            (c for c in self.contacts.values() if c["email_address"]["address"].lower() == address.lower()), None
        )

    def unsubscribe_in_ui(self, address: str, *, reason: str = "No longer interested", source: str = "Contact") -> str:
        """The contact opted out at Constant Contact (no webhook is sent); as the real API
        does, this changes ``email_address.updated_at``, not the contact's ``updated_at``."""
        with self._lock:
            contact = self.find(address)
            contact_id = contact["contact_id"] if contact else self.add_contact(address)
            self._set_unsubscribed(self.contacts[contact_id], source, reason)
        return contact_id

    def delete_in_ui(self, address: str) -> None:
        with self._lock:
            contact = self.find(address)
            assert contact is not None
            contact["deleted_at"] = self.now().date().isoformat()

    def issue_code(self, redirect_uri: str) -> str:
        code = secrets.token_urlsafe(16)
        self.codes[code] = (redirect_uri, self.now().timestamp() + 300)
        return code

    def _set_unsubscribed(self, contact: dict[str, Any], source: str, reason: str | None) -> None:
        stamp = _cc_iso(self.now())
        email = contact["email_address"]
        email.update(
            permission_to_send="unsubscribed",
            opt_out_source=source,
            opt_out_date=stamp,
            opt_out_reason=reason,
            updated_at=stamp,
        )
        contact["list_memberships"] = []

    # Tokens --------------------------------------------------------------------------------

    def _new_refresh_token(self) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        if self.rotating:
            self.refresh_tokens.clear()
        self.refresh_tokens.add(token)
        return token

    def _new_access_token(self) -> str:
        expiry = self.now().timestamp() + self.access_lifetime
        header = base64.urlsafe_b64encode(b'{"alg":"RS256","kid":"fake"}').rstrip(b"=").decode()
        claims = {"exp": int(expiry), "jti": secrets.token_hex(8), "scp": ["contact_data", "offline_access"]}
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = f"{header}.{payload}.{secrets.token_urlsafe(16)}"
        self.access_tokens[token] = expiry
        return token

    def serve(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], Any]:
        path = unquote(urlsplit(target).path)
        if path in (CC_TOKEN_PATH, CC_AUTHORIZE_PATH):
            query = parse_qs(urlsplit(target).query, keep_blank_values=True)
            try:
                if path == CC_AUTHORIZE_PATH:
                    status, extra, answer = self._authorize(method, query)
                else:
                    status, extra, answer = self._token(method, headers, query, raw)
            except Reject as exc:
                if exc.unexpected:
                    self.unexpected.append(f"{method} {target}: {exc.status} {exc.body}")
                status, extra, answer = exc.status, {}, exc.body
            with self._lock:
                self.calls.append(Call(method, path, query, None, status, time.time()))
            return status, extra, answer
        return super().serve(method, target, headers, raw)

    def _authorize(self, method: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        """The user signs in and consents at once: a redirect to ``redirect_uri`` with a code."""
        one = {k: v[0] for k, v in query.items()}
        scopes = set(one.get("scope", "").replace(" ", "+").split("+"))
        if (
            method != "GET"
            or one.get("client_id") != CC_CLIENT_ID
            or one.get("response_type") != "code"
            or not one.get("redirect_uri", "").startswith(("http://", "https://"))
            or not one.get("state")
            or not {"contact_data", "offline_access"} <= scopes
        ):
            raise Reject(400, {"error": "invalid_request", "error_description": f"bad authorize request {one}"})
        code = self.issue_code(one["redirect_uri"])
        location = f"{one['redirect_uri']}?{urlencode({'code': code, 'state': one['state']})}"
        return 302, {"Location": location}, None

    def _token(
        self, method: str, headers: Any, query: dict[str, list[str]], raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        expected = "Basic " + base64.b64encode(f"{CC_CLIENT_ID}:{CC_CLIENT_SECRET}".encode()).decode()
        if method != "POST":
            raise Reject(405, {"error": "invalid_request", "error_description": "POST only"})
        if headers.get("Authorization") != expected:
            raise Reject(
                401, {"error": "invalid_client", "error_description": "Invalid value for 'client_id' parameter."}
            )
        if raw and not (headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            raise Reject(400, {"error": "invalid_request", "error_description": "form body expected"})
        params = {k: v[0] for k, v in {**query, **parse_qs(raw.decode(), keep_blank_values=True)}.items()}
        if self.token_delay:
            time.sleep(self.token_delay)
        with self._lock:
            grant = params.get("grant_type")
            if grant == "refresh_token":
                if params.get("refresh_token") not in self.refresh_tokens:
                    self.invalid_grants += 1
                    raise Reject(
                        400,
                        {"error": "invalid_grant", "error_description": "unknown, invalid, or expired refresh token"},
                        unexpected=False,
                    )
                refresh = self._new_refresh_token() if self.rotating else params["refresh_token"]
            elif grant == "authorization_code":
                redirect_uri, expiry = self.codes.pop(params.get("code", ""), ("", 0.0))
                if not redirect_uri or expiry < self.now().timestamp() or params.get("redirect_uri") != redirect_uri:
                    raise Reject(
                        400,
                        {
                            "error": "invalid_grant",
                            "error_description": "The authorization code is invalid or has expired.",
                        },
                    )
                refresh = self._new_refresh_token()
            else:
                raise Reject(400, {"error": "unsupported_grant_type", "error_description": f"{grant!r}"})
            self.token_grants.append(grant)
            return (
                200,
                {},
                {
                    "access_token": self._new_access_token(),
                    "token_type": "Bearer",
                    "expires_in": int(self.access_lifetime),
                    "scope": "contact_data offline_access",
                    "refresh_token": refresh,
                },
            )

    # The API -------------------------------------------------------------------------------

    def check_auth(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        expiry = self.access_tokens.get(token)
        if scheme != "Bearer" or expiry is None or expiry <= self.now().timestamp():
            raise Reject(401, {"error_key": "unauthorized", "error_message": "Unauthorized"}, unexpected=False)
        with self._rate_lock:
            day = self.now().date().isoformat()
            if self.used_today.get(day, 0) >= self.daily_quota:
                raise Reject(429, {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}, unexpected=False)
            if self.per_second is not None:
                tick = time.monotonic()
                while self._recent and tick - self._recent[0] >= 1.0:
                    self._recent.popleft()
                if len(self._recent) >= self.per_second:
                    raise Reject(
                        429, {"error_key": "throttled", "error_message": "Too Many Requests"}, unexpected=False
                    )
                self._recent.append(tick)
            self.used_today[day] = self.used_today.get(day, 0) + 1

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v3", "contacts"]:
            if len(parts) == 2 and method == "GET" and body is None:
                return self._list_contacts(query)
            if len(parts) == 2 and method == "POST":
                return self._create(body)
            if len(parts) == 4 and parts[2] == "resubscribe" and method == "PUT":
                return self._resubscribe(parts[3], body)
            if len(parts) == 3 and parts[2] == "sign_up_form" and method == "POST":
                return self._sign_up(body)
            if len(parts) == 3 and method in ("GET", "PUT"):
                contact = self._contact(parts[2])
                if method == "GET" and body is None:
                    include = self._includes(query)
                    return 200, self._render(contact, include)
                if method == "PUT":
                    return self._put(contact, body)
        if parts[:2] == ["v3", "activities"]:
            if method == "POST" and parts[2:] == ["remove_list_memberships"]:
                return self._remove_memberships(body)
            if method == "GET" and len(parts) == 3 and body is None:
                activity = self.activities.get(parts[2])
                if activity is None:
                    raise _cc_errors(404, "not_found", "The requested resource was not found.", unexpected=False)
                activity.update(state="completed", percent_done=100)
                activity["status"]["items_completed_count"] = activity["status"]["items_total_count"]
                return 200, activity
        raise _cc_errors(404, "not_found", "The requested resource was not found.")

    def _contact(self, contact_id: str) -> dict[str, Any]:
        if not _UUID_RE.match(contact_id):
            raise _cc_errors(404, "contacts.api.not_found", "contact_id is in an invalid format.")
        contact = self.contacts.get(contact_id)
        if contact is None:
            raise _cc_errors(404, "contacts.api.not_found", "Contact not found.", unexpected=False)
        return contact

    @staticmethod
    def _includes(query: dict[str, list[str]]) -> set[str]:
        include = set(filter(None, (query.get("include", [""])[0]).split(",")))
        if not include <= CC_INCLUDES:
            raise _cc_errors(400, "contacts.api.validation.error", "include does not have a valid value")
        return include

    @staticmethod
    def _render(contact: dict[str, Any], include: set[str]) -> dict[str, Any]:
        shown = {k: copy.deepcopy(v) for k, v in contact.items() if k not in CC_SUBRESOURCES or k in include}
        return shown

    def _list_contacts(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        allowed = {
            "status",
            "email",
            "lists",
            "limit",
            "include",
            "include_count",
            "cursor",
            "optout_after",
            "optout_before",
            "updated_after",
            "updated_before",
            "created_after",
            "created_before",
        }
        for name, values in query.items():
            if name not in allowed or len(values) != 1:
                raise _cc_errors(400, "contacts.api.validation.error", f"{name} does not have a valid value")
        one = {k: v[0] for k, v in query.items()}
        if "cursor" in one:
            if set(one) != {"cursor"} or one["cursor"] not in self._cursors:
                raise _cc_errors(400, "contacts.api.validation.error", "cursor does not have a valid value")
            ids, offset, limit, include = self._cursors.pop(one["cursor"])
            return 200, self._page(ids, offset, limit, include, count=False)
        statuses = set((one.get("status") or "active,not_set,pending_confirmation,temp_hold,unsubscribed").split(","))
        if not statuses <= CC_STATUSES:
            raise _cc_errors(400, "contacts.api.validation.error", "status does not have a valid value")
        try:
            limit = int(one.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 500:
            raise _cc_errors(400, "contacts.api.validation.error", "limit does not have a valid value")
        if one.get("include_count", "false") not in ("true", "false"):
            raise _cc_errors(400, "contacts.api.validation.error", "include_count does not have a valid value")
        times = {}
        for name in (
            "optout_after",
            "optout_before",
            "updated_after",
            "updated_before",
            "created_after",
            "created_before",
        ):
            if name in one:
                parsed = _parse_iso(one[name])
                if parsed is None:
                    raise _cc_errors(400, "contacts.api.validation.error", f"{name} does not have a valid value")
                times[name] = parsed
        if not self.optout_filter_works and ("optout_after" in times or "optout_before" in times):
            raise _cc_errors(
                400, "contacts.api.validation.error", "optout_after does not have a valid value", unexpected=False
            )
        include = self._includes(query)
        ids = []
        for contact_id, contact in self.contacts.items():
            email = contact["email_address"]
            deleted = "deleted_at" in contact
            if "all" not in statuses:
                if deleted and "deleted" not in statuses:
                    continue
                if (
                    not deleted
                    and email["permission_to_send"] not in statuses
                    and not ("active" in statuses and email["permission_to_send"] in ("explicit", "implicit"))
                ):
                    continue
                if deleted and "deleted" not in statuses:
                    continue
            if "email" in one and email["address"].lower() != one["email"].lower():
                continue
            opt_out = _parse_iso(email.get("opt_out_date") or "")
            if "optout_after" in times and (opt_out is None or opt_out <= times["optout_after"]):
                continue
            if "optout_before" in times and (opt_out is None or opt_out >= times["optout_before"]):
                continue
            updated = _parse_iso(contact["updated_at"])
            assert updated is not None
            if "updated_after" in times and updated <= times["updated_after"]:
                continue
            ids.append(contact_id)
        return 200, self._page(ids, 0, limit, include, count=one.get("include_count") == "true")

    def _page(self, ids: list[str], offset: int, limit: int, include: set[str], *, count: bool) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "contacts": [
                self._render(self.contacts[i], include) for i in ids[offset : offset + limit] if i in self.contacts
            ]
        }
        if count:
            answer["contacts_count"] = len(ids)
        if offset + limit < len(ids):
            cursor = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()
            self._cursors[cursor] = (ids, offset + limit, limit, include)
            answer["_links"] = {"next": {"href": f"/v3/contacts?cursor={quote(cursor)}"}}
        return answer

    def _validate_email(self, value: Any, *, permission_required: bool = False) -> dict[str, Any]:
        if not isinstance(value, dict) or not isinstance(value.get("address"), str) or "@" not in value["address"]:
            raise _cc_errors(400, "contacts.api.validation.error", "email_address.address is required")
        permission = value.get("permission_to_send")
        if permission is not None and permission not in (
            "explicit",
            "implicit",
            "not_set",
            "pending_confirmation",
            "temp_hold",
            "unsubscribed",
        ):
            raise _cc_errors(400, "contacts.api.validation.error", "permission_to_send does not have a valid value")
        reason = value.get("opt_out_reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 255):
            raise _cc_errors(400, "contacts.api.validation.error", "opt_out_reason does not have a valid value")
        unknown = set(value) - {"address", "permission_to_send", "opt_out_reason"}
        if unknown:
            raise _cc_errors(400, "contacts.api.validation.error", f"email_address.{sorted(unknown)[0]} is read-only")
        return value

    def _put(self, contact: dict[str, Any], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or body.get("update_source") not in ("Contact", "Account"):
            raise _cc_errors(400, "contacts.api.validation.error", "update_source is required")
        allowed = {"email_address", "update_source", *CC_CORE, *CC_SUBRESOURCES, "sms_channel"}
        unknown = set(body) - allowed
        if unknown:
            raise _cc_errors(400, "contacts.api.validation.error", f"{sorted(unknown)[0]} is not a valid property")
        email_in = self._validate_email(body.get("email_address"))
        source = body["update_source"]
        email = contact["email_address"]
        permission = email_in.get("permission_to_send")
        if (
            permission in ("explicit", "implicit")
            and email["permission_to_send"] == "unsubscribed"
            and email.get("opt_out_source") == "Contact"
            and source == "Account"
        ):
            raise _cc_errors(
                400, "contacts.api.validation.error", "The contact opted out; only the contact can opt back in"
            )
        if "deleted_at" in contact and source != "Account":
            raise _cc_errors(
                400, "contacts.api.validation.error", "To restore a deleted contact, update_source must be Account"
            )
        other = self.find(email_in["address"])
        if other is not None and other is not contact:
            raise _cc_errors(409, "contacts.api.conflict", "Email already exists", unexpected=False)
        stamp = _cc_iso(self.now())
        before = {f: contact.get(f) for f in (*CC_CORE, "list_memberships")}
        for field in CC_CORE:  # a PUT replaces the record: core fields left out become null
            contact[field] = body.get(field)
        for field in CC_SUBRESOURCES:  # subresources left out are kept
            if field in body:
                contact[field] = body[field]
        contact.pop("deleted_at", None)
        email["address"] = email_in["address"]
        contact["update_source"] = source
        if permission == "unsubscribed" and email["permission_to_send"] != "unsubscribed":
            self._set_unsubscribed(contact, source, email_in.get("opt_out_reason"))
        elif permission in ("explicit", "implicit") and email["permission_to_send"] != permission:
            email.update(permission_to_send=permission, opt_in_source=source, opt_in_date=stamp, updated_at=stamp)
            for key in ("opt_out_source", "opt_out_date", "opt_out_reason"):
                email.pop(key, None)
        if any(contact.get(f) != v for f, v in before.items()):
            contact["updated_at"] = stamp  # an opt-out alone does not change it (the CC trap)
        for list_id in contact.get("list_memberships") or []:
            if list_id not in self.lists:
                raise _cc_errors(404, "contacts.api.not_found", f"list {list_id} not found")
        return 200, self._render(contact, {"list_memberships"})

    def _create(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or body.get("create_source") not in ("Contact", "Account"):
            raise _cc_errors(400, "contacts.api.validation.error", "create_source is required")
        email_in = self._validate_email(body.get("email_address"))
        if self.find(email_in["address"]) is not None:
            raise _cc_errors(409, "contacts.api.conflict", "Email already exists", unexpected=False)
        fields = {f: body.get(f) for f in CC_CORE}
        contact_id = self.add_contact(
            email_in["address"], permission_to_send=email_in.get("permission_to_send") or "implicit", **fields
        )
        contact = self.contacts[contact_id]
        contact["create_source"] = body["create_source"]
        if email_in.get("permission_to_send") == "unsubscribed":
            self._set_unsubscribed(contact, body["create_source"], email_in.get("opt_out_reason"))
        return 201, self._render(contact, set())

    def _resubscribe(self, contact_id: str, body: Any) -> tuple[int, Any]:
        if (
            not isinstance(body, dict)
            or set(body) != {"list_ids"}
            or not isinstance(body["list_ids"], list)
            or not body["list_ids"]
            or not all(isinstance(x, str) and _UUID_RE.match(x) for x in body["list_ids"])
        ):
            raise _cc_errors(400, "contacts.api.validation.error", "list_ids is required")
        contact = self._contact(contact_id)
        if contact["email_address"]["permission_to_send"] != "unsubscribed":
            raise _cc_errors(400, "contacts.api.validation.error", "The contact is not unsubscribed")
        if contact_id in self.resubscribe_sent:
            raise _cc_errors(409, "contacts.api.conflict", "A resubscribe email was already sent", unexpected=False)
        self.resubscribe_sent.add(contact_id)
        return 200, None

    def _sign_up(self, body: Any) -> tuple[int, Any]:
        lists = body.get("list_memberships") if isinstance(body, dict) else None
        address = body.get("email_address") if isinstance(body, dict) else None
        if (
            not isinstance(lists, list)
            or not 1 <= len(lists) <= 50
            or not isinstance(address, str)
            or len(address) > 50
        ):
            raise _cc_errors(400, "contacts.api.validation.error", "email_address and list_memberships are required")
        if not set(lists) <= self.lists:
            raise _cc_errors(404, "contacts.api.not_found", "list not found")
        contact = self.find(address)
        if contact is None:
            contact = self.contacts[self.add_contact(address)]
            status, action = 201, "created"
        else:
            status, action = 200, "updated"
        contact["email_address"]["permission_to_send"] = "explicit"
        contact["list_memberships"] = list(dict.fromkeys([*contact["list_memberships"], *lists]))
        return status, {"contact_id": contact["contact_id"], "action": action}

    def _remove_memberships(self, body: Any) -> tuple[int, Any]:
        source = body.get("source") if isinstance(body, dict) else None
        targets = body.get("list_ids") if isinstance(body, dict) else None
        kinds = {"contact_ids", "list_ids", "all_active_contacts", "tag_ids", "engagement_level"}
        if not isinstance(source, dict) or len(set(source) & kinds) != 1 or set(source) - kinds:
            raise _cc_errors(400, "activities.api.validation.error", "source must name exactly one kind")
        if not isinstance(targets, list) or not 1 <= len(targets) <= 50:
            raise _cc_errors(400, "activities.api.validation.error", "list_ids is required (1 to 50)")
        if not set(targets) <= self.lists:
            raise _cc_errors(404, "activities.api.not_found", "list not found")
        if sum(1 for a in self.activities.values() if a["state"] != "completed") >= 1000:
            raise Reject(
                429,
                [
                    {
                        "error_key": "activities.api.limit",
                        "error_message": "You exceeded 1,000 queued activities for this user account.",
                    }
                ],
            )
        ids = source.get("contact_ids")
        if ids is not None and (not isinstance(ids, list) or not 1 <= len(ids) <= 500):
            raise _cc_errors(400, "activities.api.validation.error", "contact_ids: 1 to 500 ids")
        for contact_id in ids or []:
            contact = self.contacts.get(contact_id)
            if contact is not None:
                contact["list_memberships"] = [x for x in contact["list_memberships"] if x not in targets]
        activity_id = str(uuid.uuid4())
        stamp = _cc_iso(self.now())
        self.activities[activity_id] = {
            "activity_id": activity_id,
            "state": "initialized",
            "created_at": stamp,
            "updated_at": stamp,
            "percent_done": 0,
            "activity_errors": [],
            "status": {"items_total_count": len(ids or []), "items_completed_count": 0, "list_count": len(targets)},
            "_links": {"self": {"href": f"/v3/activities/{activity_id}"}},
        }
        return 201, copy.deepcopy(self.activities[activity_id])
