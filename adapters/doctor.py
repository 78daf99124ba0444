"""``optout-hub doctor``: a configuration checked against what the mailbox providers and the
hub need (README "Commands"; docs/operations.md). One finding per line: ``ok``, ``warning``
or ``error``; the command exits 1 when any is an error.

The checks talk to the real things: the database, the public URL over HTTP, DNS (through
:class:`DNS`, pointed at any name server), each provider's API. Each check turns its own
failures into findings, so one unreachable part never hides the others.
"""

from __future__ import annotations

import dataclasses
import email.utils
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
import requests
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from adapters.config import Config
from adapters.errors import ProviderAPIError
from adapters.providers.client import PushClient
from adapters.store import database

POSTFIX_DEFAULT_SIZE = 10_240_000
CLOCK_WARNING_SECONDS = 2.0
CLOCK_ERROR_SECONDS = 60.0


class Level(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    detail: str

    def line(self) -> str:
        return f"{self.level.value:<7} {self.check}: {self.detail}"


class DNSUnavailable(Exception):
    """No name server answered: nothing can be concluded about the record."""


class DNS:
    """TXT and MX lookups through dnspython; ``nameserver`` (``host`` or ``host:port``)
    replaces the system's resolvers."""

    def __init__(self, nameserver: str | None = None, timeout: float = 5.0) -> None:
        self._resolver = dns.resolver.Resolver(configure=nameserver is None)
        if nameserver is not None:
            host, _, port = nameserver.rpartition(":") if nameserver.count(":") == 1 else (nameserver, "", "")
            self._resolver.nameservers = [host]
            self._resolver.port = int(port) if port else 53
        self._resolver.lifetime = timeout

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode(errors="replace") for r in self._query(name, "TXT") if isinstance(r, TXT)]

    def mx(self, name: str) -> list[str]:
        return [r.exchange.to_text().rstrip(".") for r in self._query(name, "MX") if isinstance(r, MX)]

    def _query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        try:
            return list(self._resolver.resolve(name, rdtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DNSUnavailable(str(exc)) from exc


@dataclasses.dataclass(frozen=True)
class Doctor:
    """The checks of one configuration, with the parts they reach passed in."""

    config: Config
    engine: Engine
    http: requests.Session
    dns: DNS
    clients: dict[str, PushClient]
    now: Callable[[], datetime]
    sending_domains: Sequence[tuple[str, str]] = ()  # (domain, DKIM selector)

    def run(self) -> list[Finding]:
        return [
            *self.database(),
            *self.public_url(),
            *self.secrets(),
            *self.listener(),
            *self.sending(),
            *self.providers(),
        ]

    def database(self) -> Iterator[Finding]:
        try:
            current, head = database.schema_revisions(self.engine)
            server = database.server_time(self.engine)
        except SQLAlchemyError as exc:
            yield Finding(Level.ERROR, "database", f"unreachable ({exc.__class__.__name__})")
            return
        if current != head:
            yield Finding(
                Level.ERROR, "database", f"schema at {current or 'nothing'}, code needs {head}: run db upgrade"
            )
        else:
            yield Finding(Level.OK, "database", f"reachable, schema at {head}")
        if server is not None:
            yield self._clock("clock", "the database server", (self.now() - server).total_seconds())

    def public_url(self) -> Iterator[Finding]:
        url = self.config.http.public_url.rstrip("/")
        parts = urlsplit(url)
        if parts.scheme != "https":
            yield Finding(
                Level.ERROR,
                "public_url",
                f"{url} is not HTTPS: Gmail and Yahoo ignore one-click (RFC 8058) URLs that are not https",
            )
        else:
            yield Finding(Level.OK, "public_url", f"{url} is HTTPS")
        try:
            answer = self.http.get(f"{url}/healthz", timeout=10)
        except requests.exceptions.SSLError as exc:
            yield Finding(Level.ERROR, "public_url reachable", f"TLS failed for {parts.netloc}: {type(exc).__name__}")
            return
        except requests.RequestException as exc:
            yield Finding(
                Level.WARNING, "public_url reachable", f"{url}/healthz not reachable from here ({type(exc).__name__})"
            )
            return
        if answer.status_code != 200:
            yield Finding(Level.ERROR, "public_url reachable", f"{url}/healthz answered {answer.status_code}")
            return
        yield Finding(Level.OK, "public_url reachable", f"{url}/healthz answered 200")
        if date := answer.headers.get("Date"):
            skew = (self.now() - email.utils.parsedate_to_datetime(date)).total_seconds()
            yield self._clock("clock", f"{parts.netloc}", skew, resolution=1.0)

    def secrets(self) -> Iterator[Finding]:
        security = self.config.security
        if security.token_secret is None:
            yield Finding(
                Level.WARNING,
                "token secret",
                f"${security.token_secret_env} not set: a generated secret is kept in the database "
                "(back the database up; every process must share it)",
            )
        else:
            yield Finding(Level.OK, "token secret", f"from ${security.token_secret_env}")
        if security.admin_token is None:
            yield Finding(
                Level.WARNING, "admin token", f"${security.admin_token_env} not set: /admin and /api refuse all"
            )
        else:
            yield Finding(Level.OK, "admin token", f"from ${security.admin_token_env}")

    def listener(self) -> Iterator[Finding]:
        for domain in self.config.smtp.domains:
            try:
                exchanges = self.dns.mx(domain)
            except DNSUnavailable as exc:
                yield Finding(Level.WARNING, f"MX {domain}", f"DNS did not answer ({exc})")
                continue
            if exchanges:
                yield Finding(Level.OK, f"MX {domain}", ", ".join(sorted(exchanges)))
            else:
                yield Finding(Level.ERROR, f"MX {domain}", "no MX record: mailto: List-Unsubscribe mail cannot arrive")
        size = self.config.smtp.max_message_bytes
        if size < POSTFIX_DEFAULT_SIZE:
            yield Finding(
                Level.WARNING,
                "smtp.max_message_bytes",
                f"{size} is below Postfix's default message_size_limit ({POSTFIX_DEFAULT_SIZE}): "
                "set both to the same value, or mail Postfix accepted is refused behind it",
            )
        else:
            yield Finding(Level.OK, "smtp.max_message_bytes", f"{size}")

    def sending(self) -> Iterator[Finding]:
        if not self.sending_domains:
            yield Finding(
                Level.WARNING,
                "DKIM",
                "no --sending-domain given: the DKIM record whose signature must cover "
                "List-Unsubscribe and List-Unsubscribe-Post was not checked",
            )
            return
        for domain, selector in self.sending_domains:
            yield from self._txt_check(
                f"DKIM {selector}._domainkey.{domain}",
                f"{selector}._domainkey.{domain}",
                has_dkim_key,
                "no DKIM public key: Gmail and Yahoo honour one-click only with a DKIM-signed List-Unsubscribe",
            )
            yield from self._txt_check(f"SPF {domain}", domain, lambda r: r.startswith("v=spf1"), "no SPF record")
            yield from self._txt_check(
                f"DMARC {domain}",
                f"_dmarc.{domain}",
                lambda r: r.startswith("v=DMARC1"),
                "no DMARC record",
            )

    def providers(self) -> Iterator[Finding]:
        if not self.clients:
            yield Finding(Level.WARNING, "providers", "none enabled: opt-outs are recorded but pushed nowhere")
        for slug, client in self.clients.items():
            try:
                yield Finding(Level.OK, f"provider {slug}", client.check())
            except ProviderAPIError as exc:
                yield Finding(Level.ERROR, f"provider {slug}", str(exc).removeprefix(f"{slug}: "))

    def _txt_check(self, check: str, name: str, valid: Callable[[str], bool], why: str) -> Iterator[Finding]:
        """ok with the record found, an error saying ``why`` when none is valid."""
        try:
            records = self.dns.txt(name)
        except DNSUnavailable as exc:
            yield Finding(Level.WARNING, check, f"DNS did not answer ({exc})")
            return
        found = [r for r in records if valid(r)]
        yield Finding(Level.OK, check, found[0][:80]) if found else Finding(Level.ERROR, check, why)

    @staticmethod
    def _clock(check: str, other: str, skew: float, resolution: float = 0.0) -> Finding:
        """Skew of this machine's clock against ``other``; ``resolution``: how coarse the other
        clock's reading is (an HTTP Date has whole seconds)."""
        size = max(abs(skew) - resolution, 0.0)
        detail = f"{skew:+.1f} s against {other}"
        if size > CLOCK_ERROR_SECONDS:
            return Finding(Level.ERROR, check, f"{detail}: fix NTP (times of requests are evidence)")
        if size > CLOCK_WARNING_SECONDS:
            return Finding(Level.WARNING, check, f"{detail}: check NTP")
        return Finding(Level.OK, check, detail)


def has_dkim_key(record: str) -> bool:
    """A DKIM key record (RFC 6376 3.6.1) with a public key: an empty ``p=`` means revoked."""
    tags = dict(tag.strip().split("=", 1) for tag in record.split(";") if "=" in tag)
    return bool(tags.get("p", "").strip())
