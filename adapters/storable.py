"""Text made storable in both databases, at the edge where it comes in.

PostgreSQL refuses U+0000 in ``text`` and ``jsonb`` ("unsupported Unicode escape sequence"),
and neither driver can encode a lone surrogate (``\\udc80``, as JSON's ``"\\udc80"`` decodes) to
UTF-8. One such character in one free-text field (a SendGrid ``reason``, a HubSpot
``changeSource``) would fail the transaction of a whole delivery, so every such character becomes
U+FFFD, field by field, and the rest of the text and of the delivery is kept.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

REFUSED = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable_text(value: str) -> str:
    """``value`` with NUL and lone surrogates replaced by U+FFFD."""
    if value.isascii() and "\x00" not in value:  # the common case, without the regex
        return value
    return REFUSED.sub(REPLACEMENT, value)


def storable(value: Any) -> Any:
    """A JSON-shaped value (mappings, lists, strings, numbers) with every string in it, keys
    included and at any depth, made storable; other values are returned as they are. A value
    with nothing to clean is returned itself, not copied (imports share one metadata object
    among many events, and every event of every source passes through here)."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, Mapping):
        cleaned: dict[Any, Any] | None = None  # built only once something had to change
        for n, (k, v) in enumerate(value.items()):
            nk, nv = storable(k), storable(v)
            if cleaned is None and (nk is not k or nv is not v):
                cleaned = dict(itertools.islice(value.items(), n))
            if cleaned is not None:
                cleaned[nk] = nv
        return value if cleaned is None else cleaned
    if isinstance(value, (list, tuple)):
        items = [storable(v) for v in value]
        return value if all(c is v for c, v in zip(items, value, strict=True)) else items
    return value


def storable_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object's fields (event metadata, a queued event), made storable."""
    cleaned = storable(fields)
    return cleaned if isinstance(cleaned, dict) else dict(cleaned)
