"""Signed unsubscribe tokens and the List-Unsubscribe headers that carry them.

A token is ``base32(kid ‖ recipient id ‖ HMAC-SHA256(secret, kid ‖ id)[:10])`` in lower case
without padding: 28 characters whatever the address, topic or campaign, so that
``unsub-<token>`` fits an e-mail local part (≤ 64 octets) and survives mail servers that fold
case. The recipient id points into the ``recipients`` table, which holds the address, topic
and campaign (written idempotently when headers are issued). ``kid`` is derived from the
secret, so that tokens signed with a previous secret still verify after a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from adapters.errors import TokenError

MAILTO_PREFIX = "unsub-"
_ID_BYTES = 6
_MAC_BYTES = 10
_TOKEN_BYTES = 1 + _ID_BYTES + _MAC_BYTES
TOKEN_LENGTH = 28  # len(base32(17 bytes)) without padding
MAX_RECIPIENT_ID = 2 ** (8 * _ID_BYTES) - 1


def key_id(secret: bytes) -> int:
    """One byte that names a secret, without revealing it."""
    return hashlib.sha256(b"optout-hub token key id\x00" + secret).digest()[0]


class TokenSigner:
    """Issues tokens with the first secret and verifies with any of them (rotation)."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets or any(len(s) < 16 for s in secrets):
            raise ValueError("token secrets must be at least 16 bytes")
        self._keys = [(key_id(s), s) for s in secrets]

    def _mac(self, secret: bytes, head: bytes) -> bytes:
        return hmac.new(secret, b"optout-hub token v1\x00" + head, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, recipient_id: int) -> str:
        if not 0 < recipient_id <= MAX_RECIPIENT_ID:
            raise ValueError("recipient id out of range")
        kid, secret = self._keys[0]
        head = bytes([kid]) + recipient_id.to_bytes(_ID_BYTES, "big")
        raw = head + self._mac(secret, head)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def derive_key(self, label: str) -> bytes:
        """A key for another purpose (``label``: session cookies, CSRF), derived from the newest
        secret by HMAC so the secret itself is never used twice."""
        return hmac.new(self._keys[0][1], b"optout-hub derived key\x00" + label.encode(), hashlib.sha256).digest()

    def verify(self, token: str) -> int:
        """The recipient id a token names; :class:`TokenError` if malformed or forged."""
        text = token.strip().upper()
        if len(text) != TOKEN_LENGTH:
            raise TokenError("malformed token")
        try:
            raw = base64.b32decode(text + "====")
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        if len(raw) != _TOKEN_BYTES or base64.b32encode(raw).decode("ascii").rstrip("=") != text:
            raise TokenError("malformed token")  # wrong length, or non-canonical trailing bits
        head, mac = raw[: 1 + _ID_BYTES], raw[1 + _ID_BYTES :]
        for kid, secret in self._keys:
            if kid == head[0] and hmac.compare_digest(self._mac(secret, head), mac):
                return int.from_bytes(head[1:], "big")
        raise TokenError("invalid token")


def mailto_local_part(token: str) -> str:
    return f"{MAILTO_PREFIX}{token}"


def token_from_local_part(local: str) -> str | None:
    """The token in an ``unsub-<token>`` local part (any case), or ``None``."""
    lowered = local.lower()
    if lowered.startswith(MAILTO_PREFIX) and len(lowered) == len(MAILTO_PREFIX) + TOKEN_LENGTH:
        return lowered[len(MAILTO_PREFIX) :]
    return None


def unsubscribe_headers(token: str, *, mail_domain: str, public_url: str) -> tuple[str, str]:
    """The values of ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` for one recipient."""
    mailto = f"mailto:{mailto_local_part(token)}@{mail_domain}"
    url = f"{public_url.rstrip('/')}/u/{token}"
    return f"<{mailto}>, <{url}>", "List-Unsubscribe=One-Click"
