"""What every provider module shares: the push client's protocol and HTTP plumbing.

A client pushes one batch — one scope, one action, many addresses — and answers per address,
because a provider's 2xx can still hold per-address failures. A failure of the whole call is
a :class:`ProviderAPIError`; :func:`result_for_error` turns it into the same per-address
answer, so the outbox settles every row in one way.
"""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from adapters.addresses import address_key
from adapters.config import Config, Secret
from adapters.errors import AddressError, ConfigError, ProviderAPIError
from adapters.providers.webhook import WebhookSpec

log = logging.getLogger(__name__)

MAX_BODY_KEPT = 2000


class Outcome(StrEnum):
    DONE = "done"  # the provider has the state (including "already unsubscribed", "no such contact")
    RETRY = "retry"  # time-out, 5xx, 429: try again later
    DEAD = "dead"  # any other 4xx: retrying will not help; kept for an admin


@dataclasses.dataclass(frozen=True)
class PushResult:
    """The answer for one address of a push. ``status`` is the HTTP status of the call."""

    outcome: Outcome
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None

    def worse(self, other: PushResult) -> PushResult:
        """The result that decides a row pushed in several calls (dead over retry over done)."""
        order = (Outcome.DONE, Outcome.RETRY, Outcome.DEAD)
        return other if order.index(other.outcome) > order.index(self.outcome) else self


def result_for_error(exc: ProviderAPIError) -> PushResult:
    detail = str(exc) + (f" | {exc.body}" if exc.body else "")
    return PushResult(Outcome.RETRY if exc.retryable else Outcome.DEAD, exc.status, detail, exc.retry_after)


class PushClient(Protocol):
    """One provider's API, as the outbox and ``providers check`` use it."""

    slug: str
    batch_size: int

    def push(
        self, scope: str, action: str, emails: Sequence[str], *, held: Mapping[str, Collection[str]] | None = None
    ) -> dict[str, PushResult]:
        """Push ``action`` (``unsubscribe``/``resubscribe``) at ``scope`` for ``emails``.

        ``held``, for a resubscribe: per address key, the scopes it is still opted out of, which
        the push must leave opted out where the provider shares lists or groups between scopes
        (a topic's list that is also one of the global opt-out's; README "Push-back"). Answers
        one result per address, keyed by its :func:`~adapters.addresses.address_key`. Raises
        :class:`ProviderAPIError` when the whole call failed.
        """
        ...

    def check(self) -> str:
        """One read-only round of calls proving the credentials; a short description if ok."""
        ...


class ProviderModule(Protocol):
    """What a provider module exposes: its webhook (served by ``webhooks/providers.py``;
    ``None`` for a provider that sends none, such as Constant Contact) and its push-back client."""

    @property
    def WEBHOOK(self) -> WebhookSpec | None: ...

    def make_client(self, config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> PushClient: ...


def answer_key(value: object) -> str | None:
    """The :func:`~adapters.addresses.address_key` of an address a provider's answer names, or
    ``None`` for anything else there: an answer may hold any string, or none. ``None`` matches
    no address pushed, so the row is settled by what the rest of the answer says."""
    if not isinstance(value, str):
        return None
    try:
        return address_key(value)
    except AddressError:
        return None


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``, cut to a size worth keeping."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_BODY_KEPT else text[:MAX_BODY_KEPT] + "…"


def _message(body: Any) -> str:
    """The human part of a provider's error body (Mailchimp, SendGrid, HubSpot and Constant
    Contact shapes; the last answers an array of ``{"error_key", "error_message"}``)."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict) and errors[0].get("message"):
        return str(errors[0]["message"])
    for key in ("detail", "message", "title", "error_message"):
        if body.get(key):
            return str(body[key])
    return ""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0) if when.tzinfo else None


PAUSE_WITHOUT_RETRY_AFTER = 1.0  # seconds a 429 that names no wait holds the provider's calls


class Throttle:
    """How hard the hub may press one provider, shared by every call to it (README
    "Push-back"): at most ``concurrency`` requests in flight; at most ``per_window`` started in
    any rolling ``window_seconds`` (HubSpot's ten-second limit; ``None``: no such limit); and
    none at all while a 429's wait runs (:meth:`pause`), so one rate-limited call slows the
    whole provider, not just itself. A pause runs on ``now``, the clock the outbox schedules
    retries by; the rolling window on the monotonic clock."""

    def __init__(
        self,
        concurrency: int,
        *,
        now: Callable[[], datetime],
        per_window: int | None = None,
        window_seconds: float = 10.0,
    ) -> None:
        self.concurrency = max(concurrency, 1)
        self.per_window = per_window
        self.window_seconds = window_seconds
        self._now = now
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self._starts: collections.deque[float] = collections.deque()
        self._paused_until: datetime | None = None

    def pause(self, seconds: float) -> None:
        """Send nothing more to this provider for ``seconds`` (a 429's wait)."""
        until = self._now() + timedelta(seconds=seconds)
        with self._lock:
            if self._paused_until is None or until > self._paused_until:
                self._paused_until = until

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when none)."""
        with self._lock:
            until = self._paused_until
        return 0.0 if until is None else max((until - self._now()).total_seconds(), 0.0)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``concurrency`` slots, after waiting for room in the rate window."""
        with self._slots:
            self._wait_for_window()
            yield

    def _wait_for_window(self) -> None:
        if self.per_window is None:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                while self._starts and self._starts[0] <= now - self.window_seconds:
                    self._starts.popleft()
                if len(self._starts) < self.per_window:
                    self._starts.append(now)
                    return
                wait = self._starts[0] + self.window_seconds - now
            time.sleep(wait)


RetryHint = Callable[[requests.Response, Any, datetime], float | None]
"""Seconds to wait, read from a provider's 429 answer (response, parsed body, now)."""


class APIClient:
    """HTTP plumbing for one provider: base URL, auth header, time-out, and one error type.

    Every non-2xx answer and every transport failure becomes a :class:`ProviderAPIError` with
    the status, ``Retry-After`` and the body with ``secrets`` removed. ``retry_hint`` lets a
    provider derive a wait from its own rate-limit answer when ``Retry-After`` is absent.
    Every request goes through ``throttle``; a 429 pauses it, and a request made during the
    pause is not sent but fails at once as retryable, naming the wait left.
    """

    def __init__(
        self,
        provider: str,
        http: requests.Session,
        base_url: str,
        authorization: str,
        *,
        timeout: float,
        secrets: Sequence[str],
        now: Callable[[], datetime],
        retry_hint: RetryHint | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.provider = provider
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.throttle = throttle or Throttle(1, now=now)
        # one pooled connection per slot, so concurrent calls reuse connections, never wait for
        # one; mounted once per session (HubSpot's contact lookups build a client per round)
        if self.base_url + "/" not in http.adapters:
            http.mount(self.base_url + "/", HTTPAdapter(pool_connections=1, pool_maxsize=self.throttle.concurrency))
        self._authorization = authorization
        self.timeout = timeout
        self._secrets = tuple(s for s in secrets if s)
        self.now = now
        self._retry_hint = retry_hint

    def __repr__(self) -> str:
        return f"<APIClient {self.provider} {self.base_url}>"

    def request(
        self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """Send one request; answer ``(status, parsed JSON or None)`` for a 2xx."""
        url = self.base_url + path
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        with self.throttle.slot():
            wait = self.throttle.paused_for()
            if wait > 0:
                raise ProviderAPIError(
                    self.provider, f"{method} {path}: not sent, rate-limited for {wait:.1f} s more", retry_after=wait
                )
            try:
                resp = self.http.request(
                    method, url, json=json_body, params=params, headers=headers, timeout=self.timeout
                )
            except requests.Timeout:
                raise ProviderAPIError(self.provider, f"{method} {path}: timed out after {self.timeout:g} s") from None
            except requests.RequestException as exc:
                raise ProviderAPIError(self.provider, f"{method} {path}: {exc.__class__.__name__}") from None
            text = redact(resp.text, self._secrets)
            try:
                body = resp.json() if resp.content else None
            except ValueError:
                body = None
            log.debug("%s %s %s -> %s", self.provider, method, path, resp.status_code)
            if 200 <= resp.status_code < 300:
                return resp.status_code, body
            now = self.now()
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), now)
            if retry_after is None and self._retry_hint is not None and resp.status_code == 429:
                retry_after = self._retry_hint(resp, body, now)
            if resp.status_code == 429:
                self.throttle.pause(PAUSE_WITHOUT_RETRY_AFTER if retry_after is None else retry_after)
            message = redact(_message(body), self._secrets) or resp.reason or "error"
            raise ProviderAPIError(
                self.provider,
                f"{method} {path}: {resp.status_code} {message}",
                status=resp.status_code,
                body=text,
                retry_after=retry_after,
            )


def bearer_api(
    provider: str,
    http: requests.Session,
    token: Secret | None,
    *,
    setting: str,
    what: str,
    base_url: str,
    timeout: float,
    now: Callable[[], datetime],
    retry_hint: RetryHint | None = None,
    throttle: Throttle | None = None,
) -> APIClient:
    """The :class:`APIClient` of a provider that takes a bearer token (SendGrid, HubSpot);
    :class:`ConfigError` naming ``setting`` (``no <what>``) when none is configured."""
    if token is None:
        raise ConfigError(setting, f"no {what}")
    value = token.reveal()
    return APIClient(
        provider,
        http,
        base_url,
        f"Bearer {value}",
        timeout=timeout,
        secrets=(value,),
        now=now,
        retry_hint=retry_hint,
        throttle=throttle,
    )


def push_each(
    emails: Sequence[str], call: Callable[[str], PushResult], *, concurrency: int = 1
) -> dict[str, PushResult]:
    """Push address by address (for APIs without a batch form), up to ``concurrency`` calls at
    once (the provider's :class:`Throttle` bounds them further); one failure settles one row.

    A retryable failure stops the round early: the calls not yet started are left to retry
    with it rather than hammering a provider that is rate-limiting or down.
    """
    results: dict[str, PushResult] = {}
    lock = threading.Lock()
    stopped: list[PushResult] = []

    def one(address: str) -> None:
        with lock:
            result = stopped[0] if stopped else None
        if result is None:
            try:
                result = call(address)
            except ProviderAPIError as exc:
                result = result_for_error(exc)
                if result.outcome is Outcome.RETRY:
                    with lock:
                        stopped.append(result)
        with lock:
            results[address_key(address)] = result

    if concurrency <= 1 or len(emails) <= 1:
        for address in emails:
            one(address)
        return results
    with ThreadPoolExecutor(max_workers=min(concurrency, len(emails)), thread_name_prefix="push") as pool:
        for future in [pool.submit(one, address) for address in emails]:
            future.result()  # re-raises what `call` raised besides a provider's answer
    return results
