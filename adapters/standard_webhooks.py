"""Signing outbound webhooks as the Standard Webhooks convention does (standardwebhooks.com).

Three headers: ``webhook-id`` (the message's id, the same on every retry, so a receiver can
drop a repeat), ``webhook-timestamp`` (integer seconds since the epoch, of this attempt) and
``webhook-signature``: ``v1,`` then the base64 of the HMAC-SHA256, keyed by the secret, of
``"<id>.<timestamp>.<body>"``. The secret is written ``whsec_`` + base64 of its bytes; the
bytes after decoding are the key. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_<base64>`` secret stands for."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, *, now: datetime) -> dict[str, str]:
    """The headers of one signed delivery attempt of ``body``."""
    timestamp = int(now.timestamp())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret_key(secret), msg_id, timestamp, body),
        "Content-Type": "application/json",
    }
