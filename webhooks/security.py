"""Browser-facing protections: security headers, stateless CSRF tokens, token redaction in logs.

CSRF tokens are ``<unix time>.<HMAC>`` over a *binding* (the recipient id on token pages, the
session nonce on admin pages), keyed by a key derived from the token secret. They need no
cookie, so recipients' pages stay cookie-free, and a form posted more than ``max_age`` after
it was rendered is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from datetime import datetime

from flask import Flask, Response
from werkzeug.datastructures import Headers

from adapters.config import Admin, Secret
from adapters.errors import PayloadError
from adapters.providers import payloads

CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = 24 * 3600
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_TOKEN_PATH = re.compile(r"(/(?:u|preferences)/)([A-Za-z0-9]{4})[A-Za-z0-9]*")
# Mailchimp's webhook proves itself by a secret in its URL (README "Provider webhooks").
_SECRET_PATH = re.compile(r"(/webhooks/mailchimp/)[^/?#\s\"]+")
REDACTED_LOGGERS = ("gunicorn.access", "werkzeug", "waitress")


def csrf_token(key: bytes, binding: str, *, now: datetime) -> str:
    issued = int(now.timestamp())
    return f"{issued}.{_csrf_mac(key, binding, issued)}"


def check_csrf(key: bytes, binding: str, given: str | None, *, now: datetime, max_age: int = CSRF_MAX_AGE) -> datetime:
    """Raise :class:`PayloadError` unless ``given`` was issued for ``binding`` within ``max_age``
    seconds; return the time the form was rendered."""
    issued_text, _, mac = (given or "").partition(".")
    issued_at = payloads.digits(issued_text)
    if issued_at is None or not hmac.compare_digest(_csrf_mac(key, binding, issued_at), mac):
        raise PayloadError("missing or invalid form token; reload the page and try again")
    issued = datetime.fromtimestamp(issued_at, now.tzinfo)
    if not 0 <= (now - issued).total_seconds() <= max_age:
        raise PayloadError("the form has expired; reload the page and try again")
    return issued


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or ``None`` when there is none."""
    scheme, _, given = headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def token_matches(given: str | None, secret: Secret | None) -> bool:
    """Whether ``given`` is the configured ``secret``, compared in constant time; never for
    no token or no secret."""
    if secret is None:
        return False
    return hmac.compare_digest((given or "").encode(), secret.reveal().encode()) and bool(given)


def admin_for_token(given: str | None, accounts: Sequence[Admin]) -> Admin | None:
    """The admin whose token ``given`` is (``None`` when it is no one's, or no admin is
    configured). Every token is compared, whichever matches."""
    found = None
    for admin in accounts:
        if token_matches(given, admin.token):
            found = found or admin
    return found


def _csrf_mac(key: bytes, binding: str, issued: int) -> str:
    return hmac.new(key, f"csrf\x00{binding}\x00{issued}".encode(), hashlib.sha256).hexdigest()[:32]


def redact_tokens(text: str) -> str:
    """``/u/<token>`` and ``/preferences/<token>`` with only the token's first 4 characters."""
    return _TOKEN_PATH.sub(r"\1\2…", text)


def redact_secrets(text: str) -> str:
    """:func:`redact_tokens`, and the Mailchimp webhook's path secret left out entirely."""
    return redact_tokens(_SECRET_PATH.sub(r"\1…", text))


class TokenRedactingFilter(logging.Filter):
    """Rewrites log records (access logs included) so that no token or path secret appears.
    The app installs it on gunicorn's access logger and on waitress' and Werkzeug's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _set_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def init_app(app: Flask) -> None:
    app.after_request(_set_headers)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactingFilter) for f in logger.filters):
            logger.addFilter(TokenRedactingFilter())
