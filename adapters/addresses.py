"""Address normalization: the one function every source and lookup goes through.

An address is trimmed, stripped of ``mailto:``, angle brackets and a display name, its domain
lower-cased and converted to IDNA (A-labels). The local part keeps its case for display
(``Address.email``) but compares case-insensitively (``Address.key``).
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import NamedTuple
from urllib.parse import unquote

import idna

from adapters.errors import AddressError

# RFC 5321 dot-atom local part (quoted local parts are refused: no mail programme needs them).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# The common case in one match: dot-atom local part, ASCII domain of well-formed labels.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SIMPLE_RE = re.compile(rf"({_ATEXT}{{1,64}}(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+{_LABEL})")

MAX_LOCAL = 64
MAX_ADDRESS = 254


class Address(NamedTuple):
    email: str  # for display and for providers: local part as given, domain normalized
    key: str  # for comparison: the whole address lower-cased


def normalize_domain(domain: str) -> str:
    """A domain in the one form addresses and ``[smtp].domains`` are compared in: trimmed,
    without a trailing dot, lower-cased, international names as IDNA A-labels
    (``bücher.example`` becomes ``xn--bcher-kva.example``). Raises :class:`AddressError`."""
    domain = domain.strip().rstrip(".")
    if not domain:
        raise AddressError("missing domain")
    if domain.isascii():
        domain = domain.lower()
    else:
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError(f"invalid international domain: {exc}") from None
    labels = domain.split(".")
    if len(labels) < 2:
        raise AddressError("domain has no dot")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise AddressError(f"invalid domain label {label!r}")
    return domain


def normalize_address(raw: str) -> Address:
    """Normalize one address or raise :class:`AddressError` with the reason."""
    if not isinstance(raw, str):
        raise AddressError("address must be a string")
    text = raw.strip()
    fast = _SIMPLE_RE.fullmatch(text)
    if fast is not None and fast.end(1) <= MAX_LOCAL and len(text) <= MAX_ADDRESS:
        domain = fast.group(2)
        email = text if domain.islower() else f"{fast.group(1)}@{domain.lower()}"
        return Address(email, email.lower())
    return _normalize_slow(text)


def _normalize_slow(text: str) -> Address:
    if not text:
        raise AddressError("empty address")
    if text.lower().startswith("mailto:"):
        text = unquote(text[7:].split("?", 1)[0]).strip()
    if "<" in text or '"' in text or "(" in text:
        _, parsed = parseaddr(text)
        if not parsed:
            raise AddressError("unparseable address")
        text = parsed.strip()
    text = text.strip("<>").strip()
    if text.count("@") != 1:
        raise AddressError("address must contain exactly one @")
    local, domain = text.split("@")
    if not local:
        raise AddressError("missing local part")
    if len(local.encode("utf-8", "surrogatepass")) > MAX_LOCAL:  # a lone surrogate is no address either
        raise AddressError("local part longer than 64 octets")
    if not local.isascii():
        raise AddressError("non-ASCII local part")
    if not _LOCAL_RE.fullmatch(local):
        raise AddressError("invalid characters in local part")
    domain = normalize_domain(domain)
    email = f"{local}@{domain}"
    if len(email) > MAX_ADDRESS:
        raise AddressError("address longer than 254 characters")
    return Address(email, email.lower())


def address_key(raw: str) -> str:
    """The comparison key of an address (raises :class:`AddressError`); the same as
    ``normalize_address(raw).key``, without building the display form in the common case
    (bulk checks call this for every address)."""
    if isinstance(raw, str):
        text = raw.strip()
        fast = _SIMPLE_RE.fullmatch(text)
        if fast is not None and fast.end(1) <= MAX_LOCAL and len(text) <= MAX_ADDRESS:
            return text.lower()
    return normalize_address(raw).key
