"""What every provider module shares: the push client's protocol and HTTP plumbing.

A client pushes one batch — one scope, one action, many addresses — and answers per address,
because a provider's 2xx can still hold per-address failures. A failure of the whole call is
a :class:`ProviderAPIError`; :func:`result_for_error` turns it into the same per-address
answer, so the outbox settles every row in one way.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import requests

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

    def push(self, scope: str, action: str, emails: Sequence[str]) -> dict[str, PushResult]:
        """Push ``action`` (``unsubscribe``/``resubscribe``) at ``scope`` for ``emails``.

        Answers one result per address, keyed by its :func:`~adapters.addresses.address_key`. Raises
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


RetryHint = Callable[[requests.Response, Any, datetime], float | None]
"""Seconds to wait, read from a provider's 429 answer (response, parsed body, now)."""


class APIClient:
    """HTTP plumbing for one provider: base URL, auth header, time-out, and one error type.

    Every non-2xx answer and every transport failure becomes a :class:`ProviderAPIError` with
    the status, ``Retry-After`` and the body with ``secrets`` removed. ``retry_hint`` lets a
    provider derive a wait from its own rate-limit answer when ``Retry-After`` is absent.
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
    ) -> None:
        self.provider = provider
        self.http = http
        self.base_url = base_url.rstrip("/")
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
        try:
            resp = self.http.request(method, url, json=json_body, params=params, headers=headers, timeout=self.timeout)
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
) -> APIClient:
    """The :class:`APIClient` of a provider that takes a bearer token (SendGrid, HubSpot);
    :class:`ConfigError` naming ``setting`` (``no <what>``) when none is configured."""
    if token is None:
        raise ConfigError(setting, f"no {what}")
    value = token.reveal()
    return APIClient(
        provider, http, base_url, f"Bearer {value}", timeout=timeout, secrets=(value,), now=now, retry_hint=retry_hint
    )


def push_each(emails: Sequence[str], call: Callable[[str], PushResult]) -> dict[str, PushResult]:
    """Push address by address (for APIs without a batch form); one failure settles one row.

    A retryable failure stops the round early: the rest are left to retry with it rather than
    hammering a provider that is rate-limiting or down.
    """
    results: dict[str, PushResult] = {}
    for i, address in enumerate(emails):
        try:
            results[address_key(address)] = call(address)
        except ProviderAPIError as exc:
            result = result_for_error(exc)
            results[address_key(address)] = result
            if result.outcome is Outcome.RETRY:
                for rest in emails[i + 1 :]:
                    results[address_key(rest)] = result
                break
    return results
