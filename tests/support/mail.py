"""Mail for the inbound tests: message builders, a local DKIM key, a classify shortcut, and
the labelled corpus (``tests/data/corpus``)."""

from __future__ import annotations

import base64
import csv
import dataclasses
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from functools import lru_cache
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.config import Config
from inbound.classify import Classification, Envelope, classify_message
from tests.support.data import CORPUS

DOMAIN = "unsubscribe.example.com"
REPLIES = f"replies@{DOMAIN}"


def message(
    body: str = "",
    *,
    subject: str = "",
    sender: str = "Jane Doe <jane@example.org>",
    to: str = REPLIES,
    headers: dict[str, str] | None = None,
    charset: str = "utf-8",
    cte: str | None = None,
    html: str | None = None,
) -> bytes:
    """A well-formed message; ``cte`` forces "base64" or "quoted-printable" for the body."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if subject:
        msg["Subject"] = subject
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body, charset=charset, cte=cte)
    if html is not None:
        msg.add_alternative(html, subtype="html", charset=charset, cte=cte)
    return msg.as_bytes(policy=SMTP_POLICY)


def raw_message(text: str) -> bytes:
    """A message written out by hand (headers, blank line, body), with CRLF line ends."""
    return text.strip("\n").replace("\n", "\r\n").encode("utf-8") + b"\r\n"


def no_dns(name: bytes, timeout: int = 5) -> bytes | None:
    return None


@dataclasses.dataclass(frozen=True)
class DKIMKey:
    domain: str
    selector: str
    private_pem: bytes
    txt: bytes

    def sign(self, raw: bytes) -> bytes:
        sig = dkim.sign(
            raw,
            self.selector.encode(),
            self.domain.encode(),
            self.private_pem,
            include_headers=[b"from", b"to", b"subject", b"date"],
        )
        return sig + raw

    def dns(self, name: bytes, timeout: int = 5) -> bytes | None:
        return self.txt if name == f"{self.selector}._domainkey.{self.domain}.".encode() else None


@lru_cache(maxsize=4)
def dkim_key(domain: str = "example.org") -> DKIMKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DKIMKey(domain, "test", private_pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der))


def classify(
    raw: bytes,
    *,
    rcpt: str = REPLIES,
    mail_from: str | None = "jane@example.org",
    config: Config | None = None,
    resolve_token: Callable[[str], object] | None = None,
    dkim_dns: Callable[..., bytes | None] | None = no_dns,
) -> Classification:
    return classify_message(
        raw, Envelope(mail_from, (rcpt,)), config=config or Config(), resolve_token=resolve_token, dkim_dns=dkim_dns
    )  # type: ignore[arg-type]


def corpus_labels() -> list[dict[str, str]]:
    with (CORPUS / "labels.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def corpus_message(name: str) -> bytes:
    """A corpus file as bytes; the header-less reply bodies get minimal headers around them."""
    raw = (CORPUS / name).read_bytes()
    if name.endswith(".txt"):
        head = (
            f"From: Person <person@example.org>\r\nTo: {REPLIES}\r\nSubject: Re: your message\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        )
        raw = head.encode() + raw
    return raw


def corpus_path(name: str) -> Path:
    return CORPUS / name
