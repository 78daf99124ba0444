"""Message decoding and new-text extraction: what a received message says, as text.

Parsing (the standard parser), header
decoding (encoded words), address headers, the body's own text (plain preferred, HTML
converted, attachments and attached messages skipped, robust to mislabelled charsets), and
the *new* text: list footers cut here, then every part the person wrote kept, quotes,
attributions, forwarded parts and signatures left out (:mod:`~inbound.classify.quotes`).
:class:`DecodedMessage` computes the costly parts (body, new text) only when a decision asks
for them.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import email
import functools
import re
from collections.abc import Iterable, Sequence
from email.header import decode_header as _decode_words
from email.header import make_header
from email.message import Message
from email.utils import collapse_rfc2231_value, getaddresses
from html.parser import HTMLParser
from typing import Any, Protocol

from adapters.addresses import normalize_address
from adapters.errors import OptOutHubError
from inbound.classify.quotes import own_text
from inbound.classify.requests import clean_subject

MAX_TEXT = 30_000  # characters of body text examined (a request is at the top)


class EnvelopeLike(Protocol):
    @property
    def mail_from(self) -> str | None: ...

    @property
    def rcpt_tos(self) -> Sequence[str]: ...


@dataclasses.dataclass(frozen=True)
class Envelope:
    """An SMTP envelope for callers without aiosmtpd's (tests, the corpus, reprocessing)."""

    mail_from: str | None = None  # None: unknown; "" or "<>": the null sender
    rcpt_tos: Sequence[str] = ()


def parse_message(raw: bytes) -> Message:
    """The standard parser's message. mail-parser, used before, returned the same object after
    decoding every part and ``Received`` header it was not asked for (half the classifier's
    time); hostile nesting raises ``RecursionError`` here, which the caller reports."""
    return email.message_from_bytes(raw)


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes of a text part as text, robust to wrong labels.

    Pure ASCII and stateful 7-bit charsets (ISO-2022-*) use the declared charset; other
    bytes that are valid UTF-8 are UTF-8 whatever the label says (a legacy charset is almost
    never valid UTF-8 by chance), else the declared charset with replacement characters.
    """
    charset = (charset or "us-ascii").strip().strip('"').lower()
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        codec = "cp1252"
    if data.isascii():
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            return data.decode("ascii", "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(codec, "replace")


def decode_header(value: Any) -> str:
    """A header's text with its encoded words decoded (``""`` when absent)."""
    if value is None:
        return ""
    text = str(value)
    try:
        return str(make_header(_decode_words(text)))
    except Exception:  # malformed encoded words: keep the raw text
        return text


def address_pairs(value: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header; invalid addresses dropped."""
    out = []
    for name, addr in getaddresses([value]):
        addr = addr.strip()
        if "@" not in addr:
            continue
        try:
            normalized = normalize_address(addr).email
        except OptOutHubError:
            continue
        out.append((name.strip(), normalized))
    return out


def valid_addresses(candidates: Iterable[Any]) -> list[str]:
    """Normalized addresses among raw candidates (bytes or str), de-duplicated, in order."""
    seen: dict[str, str] = {}
    for raw in candidates:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        for _, addr in address_pairs(text):
            seen.setdefault(addr.lower(), addr)
    return list(seen.values())


class _HTMLText(HTMLParser):
    """Visible text of an HTML body, without quoted blocks (blockquote, Gmail/Yahoo quotes)."""

    SKIP = frozenset({"style", "script", "head", "title", "blockquote"})
    BREAK = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "table", "hr"})
    # Containers that hold a whole quote (attribution and quoted text), or a signature; each
    # leaves a ">" line in the text, so an attribution above it reads as one. Gmail's
    # ``gmail_quote`` div is read: the person's interleaved answers sit in it between the
    # ``blockquote`` parts. Outlook's
    # ``divRplyFwdMsg`` holds only the header block, its quote follows unmarked: it is read, so
    # that :mod:`~inbound.classify.quotes` sees the header block and cuts from there.
    QUOTE_CLASSES = (
        "gmail_signature",
        "yahoo_quoted",
        "moz-cite-prefix",
        "gmail_attr",
        "ms-outlook-quote",
        "OLK_SRC_BODY_SECTION",  # Outlook for Mac
        "mail-editor-reference-message-container",  # Outlook for Mac, new layout
        "x_OLK_SRC_BODY_SECTION",
        "AppleOriginalContents",
        "protonmail_quote",
        "zmail_extra",  # Zoho
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr", "img", "meta", "link", "input"):
            if tag in self.BREAK:
                self.parts.append("\n")
            return
        attr = dict(attrs)
        classes = (attr.get("class") or "") + " " + (attr.get("id") or "")
        skip = tag in self.SKIP or any(c in classes for c in self.QUOTE_CLASSES)
        self.stack.append((tag, skip))
        if skip:
            if not self.skipping and tag not in ("style", "script", "head", "title"):
                self.parts.append("\n>\n")
            self.skipping += 1
        if tag in self.BREAK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            open_tag, skip = self.stack.pop()
            if skip:
                self.skipping -= 1
            if open_tag == tag:
                break
        if tag in self.BREAK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)

    def text(self) -> str:
        return "".join(self.parts)


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    with contextlib.suppress(Exception):  # broken HTML: keep what was read
        parser.feed(html)
        parser.close()
    return parser.text()


def part_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(data, bytes):
        return ""
    return decode_text(data, part.get_content_charset())


def _body_parts(part: Message, depth: int = 0) -> tuple[Message | None, Message | None] | None:
    """(text/plain, text/html) of the message's own body: the first text leaf, with its
    multipart/alternative siblings; attachments and attached messages are not the body."""
    if depth > 20 or part.get_content_disposition() == "attachment":
        return None
    ctype = part.get_content_type()
    if part.is_multipart():
        subparts = [p for p in part.get_payload() if isinstance(p, Message)]
        if ctype.startswith("message/"):
            return None
        if ctype == "multipart/alternative":
            plain = next((p for p in subparts if p.get_content_type() == "text/plain"), None)
            html = next((p for p in subparts if p.get_content_type() == "text/html"), None)
            if html is None:
                for p in subparts:
                    if p.is_multipart():
                        found = _body_parts(p, depth + 1)
                        if found and found[1] is not None:
                            html = found[1]
                            break
            if plain is not None or html is not None:
                return plain, html
        for sub in subparts:
            found = _body_parts(sub, depth + 1)
            if found is not None:
                return found
        return None
    if ctype == "text/plain":
        return part, None
    if ctype == "text/html":
        return None, part
    return None


def body_text(msg: Message) -> str:
    """The text of the message's own body (plain preferred, HTML converted when plain is blank)."""
    try:
        found = _body_parts(msg)
    except Exception:
        found = None
    if found is None:
        if not msg.is_multipart() and msg.get_content_maintype() not in ("image", "audio", "video", "application"):
            return part_text(msg)[:MAX_TEXT]
        return ""
    plain, html = found
    text = part_text(plain) if plain is not None else ""
    if not text.strip() and html is not None:
        text = html_to_text(part_text(html))
    return text[:MAX_TEXT]


_FOOTER_CUTS = [
    re.compile(r"^_{8,}\s*\n(?:.*\n){0,2}?.*(?:mailing\s+list|listinfo|unsubscribe|mailman)", re.I | re.M),  # Mailman
    re.compile(
        r"^-- ?\n(?=(?:.*\n){0,2}.*you\s+received\s+this\s+message\s+because\s+you\s+are\s+subscribed)", re.I | re.M
    ),
    re.compile(
        r"^you\s+received\s+this\s+message\s+because\s+you\s+are\s+subscribed\s+to\s+the\s+google\s+groups", re.I | re.M
    ),
]


def new_text(text: str, title: str = "") -> str:
    """What the sender wrote in this message: list footers, forwarded and quoted parts,
    attribution lines and signatures removed (``title``: the subject replied to, see
    :func:`~inbound.classify.quotes.label_lines`)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for pattern in _FOOTER_CUTS:
        m = pattern.search(text)
        if m:
            text = text[: m.start()]
    return own_text(text, title)


_STRUCTURAL_DEFECTS = frozenset(
    {
        "NoBoundaryInMultipartDefect",
        "StartBoundaryNotFoundDefect",
        "CloseBoundaryNotFoundDefect",
        "MultipartInvariantViolationDefect",
        "InvalidMultipartContentTransferEncodingDefect",
        "InvalidBase64CharactersDefect",
        "InvalidBase64LengthDefect",
        "MissingHeaderBodySeparatorDefect",
        "FirstHeaderLineIsContinuationDefect",
    }
)


def mime_defects(msg: Message) -> list[str]:
    """Structural MIME defects the parser had to guess around (a request read from such a
    message is not trusted blindly: it goes to review)."""
    found: set[str] = set()
    try:
        for part in msg.walk():
            found.update(
                type(d).__name__ for d in getattr(part, "defects", ()) if type(d).__name__ in _STRUCTURAL_DEFECTS
            )
    except Exception:
        found.add("unwalkable")
    return sorted(found)


_LIST_HEADERS = (
    "List-Id",
    "List-Post",
    "List-Unsubscribe",
    "List-Archive",
    "X-Mailing-List",
    "Mailing-List",
    "List-Help",
)
_VIA = re.compile(r"\svia\s", re.I)


@dataclasses.dataclass
class DecodedMessage:
    """One received message as the decisions read it: parsed, headers decoded; the body's
    text and its new text are computed on first use."""

    raw: bytes
    msg: Message
    envelope: EnvelopeLike

    def __post_init__(self) -> None:
        self.subject = decode_header(self.msg.get("Subject"))
        self.from_pairs = address_pairs(decode_header(self.msg.get("From")))
        self.reply_to = address_pairs(decode_header(self.msg.get("Reply-To")))
        self.from_name: str = self.from_pairs[0][0] if self.from_pairs else ""
        self.from_addr: str | None = self.from_pairs[0][1] if self.from_pairs else None
        if not self.from_name:
            self.from_name = decode_header(self.msg.get("From")).split("<")[0].strip().strip('"')
        self.from_local = self.from_addr.split("@")[0] if self.from_addr else ""

    @functools.cached_property
    def body(self) -> str:
        return body_text(self.msg)

    @functools.cached_property
    def new(self) -> str:
        replied_to, prefixed = clean_subject(self.subject)
        return new_text(self.body, replied_to if prefixed else "")

    def header(self, name: str) -> str:
        return decode_header(self.msg.get(name)).strip()

    @property
    def null_sender(self) -> bool:
        mail_from = self.envelope.mail_from
        if mail_from is not None and not mail_from.strip().strip("<>").strip():
            return True
        return self.header("Return-Path").replace(" ", "") == "<>"

    @property
    def list_relayed(self) -> bool:
        return any(self.msg.get(h) is not None for h in _LIST_HEADERS)

    @functools.cached_property
    def list_address(self) -> str | None:
        """The mailing list's own address (``List-Post``), lower-cased."""
        post = self.header("List-Post")
        found = valid_addresses([re.sub(r"(?i)mailto:", "", post).split("?")[0].strip("<> ")]) if post else []
        return found[0].lower() if found else None

    def requester(self) -> tuple[str | None, str]:
        """Who wrote the message, and how that was found: ``From``, or ``Reply-To`` where a
        list rewrote ``From`` to itself ("Name via List <list@...>"). ``None`` when nobody is
        identifiable."""
        if self.from_addr is None:
            return None, "no From address"
        via = _VIA.search(f" {self.from_name} ") is not None
        if via or (self.list_address is not None and self.from_addr.lower() == self.list_address and self.reply_to):
            people = [a for _, a in self.reply_to if a.lower() != self.from_addr.lower()]
            if len(people) == 1:
                return people[0], "Reply-To (the list rewrote From)"
            return None, "From rewritten by a list and no single Reply-To"
        return self.from_addr, "From"

    def report_type(self) -> str:
        if self.msg.get_content_type() != "multipart/report":
            return ""
        return collapse_rfc2231_value(self.msg.get_param("report-type") or "").lower()

    def parts(self, ctype: str) -> list[Message]:
        try:
            return [p for p in self.msg.walk() if p.get_content_type() == ctype]
        except Exception:
            return []
