"""Hypothesis strategies for hostile input: text with NUL, lone surrogates and other characters
databases or codecs refuse, numbers past Python's int-parsing limit, JSON nested past any
parser's depth, and the raw bytes of JSON and form bodies built from them."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from adapters.events import OptOutEvent
from adapters.storable import REFUSED

TRICKY = [
    "\x00",
    "\udc80",
    "\ud800x",
    "\ufffd",
    "\u200b",
    "\u202e",
    "İ",
    "ß",
    "\r\n",
    "9" * 30,
    "-" + "1" * 30,
    "1e999",
    "<huge>",  # a number of 5,000 digits once dumped (:func:`_dump`)
    "NaN",
    "",
]
TEXT = st.text(st.characters(codec=None, categories=None), max_size=40) | st.sampled_from(TRICKY)
"""Any text, lone surrogates included (plain ``st.text`` never draws them)."""

NUMBERS = (
    st.integers()
    | st.integers(min_value=10**18, max_value=10**40)
    | st.sampled_from([2**63, -(2**63) - 1])
    | st.floats(allow_nan=False, allow_infinity=False)
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT


def json_values(keys: st.SearchStrategy[str] = TEXT) -> st.SearchStrategy[Any]:
    """Any JSON value, nested a little, with ``keys`` (a provider's field names, mostly)."""
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys | TEXT, inner, max_size=6),
        max_leaves=12,
    )


def deeply_nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


HUGE = b"7" * 5_000  # past Python's 4,300-digit limit for int("...")


def _dump(value: Any, ascii_only: bool) -> bytes:
    """``value`` as JSON: surrogates as ``\\udc80`` escapes, or as the ill-formed UTF-8 a
    careless sender writes; the string ``"<huge>"`` becomes a number of 5,000 digits."""
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=False).encode("utf-8", "surrogatepass")
    return text.replace(b'"<huge>"', HUGE)


def json_bodies(items: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bodies of a JSON-array webhook: arrays of ``items``, other JSON, deep nesting, a number
    of 5,000 digits, arbitrary bytes."""
    return st.one_of(
        st.builds(_dump, st.lists(items, max_size=4), st.booleans()),
        st.builds(_dump, json_values(), st.booleans()),
        st.integers(min_value=1_000, max_value=200_000).map(deeply_nested),
        st.just(b"[" + HUGE + b"]"),
        st.binary(max_size=200),
    )


def form_bodies(pairs: st.SearchStrategy[tuple[str, str]]) -> st.SearchStrategy[bytes]:
    """Form-urlencoded bodies of ``pairs``, surrogates sent as ill-formed UTF-8, or raw bytes."""

    def encode(fields: list[tuple[str, str]]) -> bytes:
        def q(text: str) -> str:
            return quote(text, errors="surrogatepass")

        return "&".join(f"{q(k)}={q(v)}" for k, v in fields).encode()

    return st.lists(pairs, max_size=10).map(encode) | st.binary(max_size=200)


def storable_event(event: OptOutEvent) -> bool:
    """Whether every text of ``event`` is one both databases take (README "Provider webhooks")."""
    texts = [event.email, event.reason or "", event.campaign or "", event.provider_event_id or ""]
    texts.append(json.dumps(event.metadata or {}, ensure_ascii=False))
    return not any(REFUSED.search(t) for t in texts)


HEADER_NAMES = st.sampled_from(
    [
        "From",
        "To",
        "Subject",
        "Reply-To",
        "Sender",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Auto-Submitted",
        "Precedence",
        "List-Id",
        "List-Unsubscribe",
        "X-HmXmrOriginalRecipient",
        "DKIM-Signature",
        "Return-Path",
        "In-Reply-To",
    ]
)
CONTENT_TYPES = st.sampled_from(
    [
        "text/plain; charset=utf-8",
        "text/plain; charset=unknown-8bit",
        'text/plain; charset="',
        "text/html; charset=gb2312",
        "multipart/alternative; boundary=b1",
        "multipart/mixed; boundary=",
        "multipart/report; report-type=feedback-report; boundary=b1",
        "multipart/report; report-type=delivery-status; boundary=b1",
        "message/rfc822",
        "message/feedback-report",
        "message/delivery-status",
        "application/octet-stream",
    ]
)
ENCODINGS = st.sampled_from(["", "base64", "quoted-printable", "8bit", "x-uuencode", "7bit\x00"])
WORDS = st.sampled_from(
    ["STOP", "unsubscribe", "退订", "please remove me", "Feedback-Type: abuse", "Action: failed", "> unsubscribe"]
)


def _line(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _part(draw: st.DrawFn, depth: int) -> bytes:
    headers = draw(st.lists(st.tuples(HEADER_NAMES, TEXT | st.builds(str, WORDS)), max_size=6))
    content_type = draw(CONTENT_TYPES)
    lines = [_line(f"{name}: {value}") for name, value in headers]
    lines += [_line(f"Content-Type: {content_type}"), _line(f"Content-Transfer-Encoding: {draw(ENCODINGS)}"), b""]
    text = st.lists(WORDS | TEXT, max_size=6).map(lambda words: _line("\r\n".join(words)))
    body = draw(text | st.binary(max_size=80))
    if content_type.startswith("multipart/") and depth < 3:
        parts = [_part(draw, depth + 1) for _ in range(draw(st.integers(0, 3)))]
        body = b"".join(b"--b1\r\n" + p + b"\r\n" for p in parts) + draw(st.sampled_from([b"--b1--\r\n", b""]))
    elif content_type == "message/rfc822" and depth < 3:
        body = _part(draw, depth + 1)
    return b"\r\n".join(lines) + b"\r\n" + body


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Raw mail as a hostile or broken sender writes it: any headers with any text (NUL, lone
    surrogates as ill-formed UTF-8), wrong or unknown content types, charsets and transfer
    encodings, unterminated multiparts, reports nested in reports, request words anywhere;
    with CR-only, LF-only or CRLF line ends; or arbitrary bytes."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    raw = _part(draw, 0)
    return raw.replace(b"\r\n", draw(st.sampled_from([b"\r\n", b"\n", b"\r"])))
