"""Fake provider APIs: real HTTP servers in threads that behave like Mailchimp, SendGrid and
HubSpot for the calls optout-hub makes, as the providers document them.

One base, :class:`FakeAPI`, serves every fake: each provider's fake (:class:`FakeMailchimp`,
:class:`FakeSendGrid`, :class:`FakeHubSpot`, started together by :class:`FakeProviders`) and
:class:`FakeContactsAPI`, HubSpot's contacts batch read alone for the contact-lookup tests.

Each fake checks method, path, query, auth header and body shape of every request and rejects
anything else the way the real API would (401 for bad credentials, 400 for a bad body, 404
for an unknown route), noting the request in ``unexpected`` so a test can fail on it. It keeps
the provider's state (suppressed addresses, list members), records each accepted call, and can
fail on demand: ``fail_next(status, retry_after=...)``, ``fail_next(timeout=...)`` and
``hold()`` (requests wait until released). ``max_in_flight`` is the most requests it was
serving at once, to check a client's concurrency bound.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us6"
SENDGRID_KEY = "SG.fake-sendgrid-key.0123456789"
HUBSPOT_TOKEN = "pat-na1-fake-hubspot-token-0123"
CONTACTS_BATCH_READ = "/crm/v3/objects/contacts/batch/read"


def provider_env_vars() -> dict[str, str]:
    return {"MAILCHIMP_API_KEY": MAILCHIMP_KEY, "SENDGRID_API_KEY": SENDGRID_KEY, "HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN}


class Reject(Exception):
    """Answer a request with an error status and body, like the real API would."""

    def __init__(self, status: int, body: Any, *, unexpected: bool = True) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.unexpected = unexpected


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

    @contextmanager
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
                    status, answer = self.route(method, path, query, body)
                extra = {}
        except Reject as exc:
            if exc.unexpected:
                self.unexpected.append(f"{method} {target}: {exc.status} {exc.body}")
            status, extra, answer = exc.status, {}, exc.body
            body = None
        with self._lock:
            self.calls.append(Call(method, path, query, body, status, time.time()))
        return status, extra, answer

    def check_auth(self, authorization: str) -> None:
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


class FakeMailchimp(FakeAPI):
    """Marketing API 3.0: ping, lists, the list batch call, member PATCH."""

    provider = "mailchimp"

    def __init__(self, lists: tuple[str, ...] = ("list1", "list2")) -> None:
        self.members: dict[str, dict[str, str]] = {list_id: {} for list_id in lists}  # list -> lower(email) -> status
        self.forgotten: set[str] = set()  # addresses deleted for good ("Forgotten Email Not Subscribed")
        self.rejected_addresses: set[str] = set()  # addresses the batch call refuses ("Invalid Resource")
        super().__init__()

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
            return 200, {"email_address": match, "status": "pending"}
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
                members[address] = "unsubscribed"
        return {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
        }


class FakeSendGrid(FakeAPI):
    """v3: scopes, unsubscribe groups, global and group suppressions."""

    provider = "sendgrid"

    def __init__(self, groups: tuple[int, ...] = (1234,)) -> None:
        self.groups = set(groups)
        self.scopes = ["asm.suppressions.global.create", "asm.groups.suppressions.create", "asm.groups.read"]
        self.global_suppressions: set[str] = set()
        self.group_suppressions: dict[int, set[str]] = {g: set() for g in groups}
        super().__init__()

    def check_auth(self, authorization: str) -> None:
        _bearer(authorization, SENDGRID_KEY, {"errors": [{"field": None, "message": "authorization required"}]})

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method == "GET" and path == "/v3/scopes" and body is None:
            return 200, {"scopes": self.scopes}
        if method == "POST" and path == "/v3/asm/suppressions/global":
            emails = self._recipients(body)
            self.global_suppressions.update(e.lower() for e in emails)
            return 201, {"recipient_emails": emails}
        if (
            method == "DELETE"
            and parts[:4] == ["v3", "asm", "suppressions", "global"]
            and len(parts) == 5
            and body is None
        ):
            self.global_suppressions.discard(parts[4].lower())
            return 204, None
        if parts[:3] == ["v3", "asm", "groups"] and len(parts) >= 4 and parts[3].isdigit():
            group = int(parts[3])
            if method == "GET" and len(parts) == 4 and body is None:
                if group not in self.groups:
                    raise Reject(404, {"errors": [{"field": None, "message": "not found"}]}, unexpected=False)
                return 200, {"id": group, "name": f"Group {group}", "description": ""}
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
        super().__init__()

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
                self.unsubscribed_all.add(address.lower())
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
            (members.add if unsubscribe else members.discard)(address.lower())
            return 200, {
                "id": subscription,
                "name": f"Subscription {subscription}",
                "status": "NOT_SUBSCRIBED" if unsubscribe else "SUBSCRIBED",
                "sourceOfStatus": "SUBSCRIPTION_STATUS",
            }
        if method == "POST" and path == CONTACTS_BATCH_READ:
            return self.read_contacts(body)
        raise _no_route(method, path)

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

    def unexpected(self) -> list[str]:
        return [u for f in self.all() for u in f.unexpected]

    def close(self) -> None:
        for fake in self.all():
            fake.close()
