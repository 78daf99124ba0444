"""Pure helpers the provider adapters share to read webhook payloads.

Each raises :class:`PayloadError` naming the place in the payload (``events[3].email``), so a
webhook answers 400 with a message the sender can act on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters.addresses import normalize_address
from adapters.errors import AddressError, PayloadError
from adapters.storable import storable_text


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by case-insensitive name, from Werkzeug's headers or a plain dict."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "getlist"):
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


# Digits of the longest number a payload may hold: ids and epoch milliseconds fit in 64 bits
# (19 digits). Longer strings are refused before ``int`` reads them: it would spend quadratic
# time on them, and refuses more than 4,300 digits with a ValueError.
MAX_DIGITS = 20


def digits(value: str) -> int | None:
    """The number a string of at most :data:`MAX_DIGITS` ASCII digits spells, else ``None``.
    (``str.isdigit`` alone lets through characters such as ``²`` that ``int`` then refuses.)"""
    return int(value) if len(value) <= MAX_DIGITS and value.isascii() and value.isdigit() else None


def json_document(body: bytes | str) -> Any:
    """The body parsed as JSON, or :class:`PayloadError` naming what is wrong with it."""
    try:
        return json.loads(body)
    except RecursionError:  # the parser's own bound on nesting (about a thousand levels)
        raise PayloadError("body is JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise PayloadError("body is not valid JSON") from None


def require_content_type(content_type: str, expected: str) -> None:
    """Refuse a body whose media type (parameters ignored) is not ``expected``."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != expected:
        raise PayloadError(f"expected Content-Type: {expected}, not {media or 'none'!r}")


def json_array(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """The body as a JSON array of objects."""
    require_content_type(content_type, "application/json")
    data = json_document(body)
    if not isinstance(data, list):
        raise PayloadError("body must be a JSON array of events")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise PayloadError(f"events[{i}] must be a JSON object")
    return data


def address(value: Any, where: str) -> str:
    """The normalized address in ``value`` (``where`` names the field in errors)."""
    if not isinstance(value, str):
        raise PayloadError(f"{where}: missing or not a string")
    try:
        return normalize_address(value).email
    except AddressError as exc:
        raise PayloadError(f"{where}: {exc}") from None


def text(value: Any, where: str, *, max_chars: int) -> str:
    """A required non-empty string of at most ``max_chars`` (the column it is stored in; a
    longer one would fail the transaction on PostgreSQL, and the provider would retry it
    forever). Numbers, as some providers send ids, become strings; text that databases refuse
    is made storable (:mod:`adapters.storable`)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise PayloadError(f"{where}: missing or not a string")
    result = str(value)
    if len(result) > max_chars:
        raise PayloadError(f"{where}: longer than {max_chars} characters")
    return storable_text(result)


def epoch(value: Any, where: str, *, scale: float = 1.0) -> datetime | None:
    """Aware UTC time of a Unix timestamp (``scale=1000`` for milliseconds); ``None`` if absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(f"{where}: must be a Unix timestamp")
    try:
        return datetime.fromtimestamp(value / scale, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(f"{where}: timestamp out of range") from None
