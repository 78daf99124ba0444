"""The SMTP listener (aiosmtpd): receive, store the raw message durably, answer.

- ``RCPT`` is accepted only for ``[smtp].domains`` (the recipient's domain normalized as the
  configuration normalizes those, so an international domain matches in Unicode or A-label
  form); anything else gets ``550 5.1.1`` and is never relayed.
- ``EHLO`` advertises ``SIZE [smtp].max_message_bytes``; larger messages get ``552`` (at
  ``RCPT`` when ``MAIL`` announced the size, else after ``DATA``) — except for a recipient
  ``unsub-<token>@`` with a token we signed: the token alone proves the request, so such a
  message is kept cut to its first ``max_message_bytes`` (``"truncated": true`` in the
  evidence meta) and answered ``250``.
- ``DATA`` commits one ``evidence`` row (:mod:`inbound.evidence`) before answering ``250``; if
  the write fails the answer is ``451 4.3.0`` so the sending server retries. The blocking
  database work runs in the writer thread, never on the event loop, and messages arriving
  together share one commit.
- Each stored message is handed to the classification thread (:mod:`inbound.classification`),
  which classifies it after the answer.
- Beyond ``[smtp].max_connections_per_peer`` open connections from one host, or
  ``[smtp].max_connections`` in all, a new one is answered ``421`` and closed; but at the
  global limit a connection that never sent a byte is evicted (``421``, oldest first) to make
  room. A connection idle for ``[smtp].timeout_seconds`` is closed, for
  ``[smtp].stress_timeout_seconds`` once 80 % of the slots are taken, so idle or slow clients
  cannot starve the others. The time-out is armed by each command, never by the bytes of a
  message: DATA must end before it runs out, and when stress begins every open connection's
  time-out is cut to the stress one, mid-DATA too, so a trickle cannot outlast it.

:class:`SMTPComponent` is the ``smtp`` part of ``serve``: it starts the classification thread,
then the listener, and stops them in the reverse order. See the README's "Mail in: the SMTP
listener".
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
from collections.abc import Callable, Collection
from typing import Any, AnyStr, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from adapters.addresses import normalize_address
from adapters.errors import OptOutHubError, StoreError, TokenError
from adapters.hub import Hub
from inbound.classification import DELAY_ENV, Classifier, default_dkim_dns
from inbound.classify import DNSLookup
from inbound.classify.tokens import recipient_token
from inbound.evidence import EvidenceWriter, Received

log = logging.getLogger(__name__)
if logging.getLogger("mail.log").level == logging.NOTSET:  # aiosmtpd logs every SMTP command at INFO
    logging.getLogger("mail.log").setLevel(logging.WARNING)

MAX_RECIPIENTS = 100

# Replies, named as aiosmtpd's testing/statuscodes.py names them.
OK_RCPT = "250 2.1.5 OK"
OK_QUEUED = "250 2.0.0 OK: message stored as {id}"
ERR_RELAY = "550 5.1.1 <{address}>: recipient not accepted here (this server does not relay)"
ERR_BAD_ADDRESS = "553 5.1.3 <{address}>: malformed address"
ERR_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
ERR_STORE = "451 4.3.0 Could not store the message, try again later"
ERR_INTERNAL = "451 4.3.0 Internal error, try again later"
ERR_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
ERR_TOO_MANY_CONNECTIONS = b"421 4.3.2 Too many connections, try again later\r\n"
ERR_TOO_MANY_FROM_PEER = b"421 4.7.0 Too many connections from your host, try again later\r\n"
ERR_EVICTED = b"421 4.3.2 Too many connections, closing an idle one\r\n"
# aiosmtpd's own answers to over-long lines and messages, with their enhanced status codes
REWORDED = {
    "500 Command line too long": "500 5.5.2 Command line too long",
    "500 Line too long (see RFC5321 4.5.3.1.6)": "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)",
    "552 Error: Too much mail data": "552 5.3.4 Message too big for this server",
}
STRESS_FRACTION = 0.8  # beyond this share of max_connections the listener is under stress


class ConnectionLimit:
    """The open connections, counted on the server's event loop thread (no locking needed).

    Besides the global limit it caps the connections of one peer host, and tracks the
    connections that never sent a byte, oldest first: at the limit the oldest of those is
    evicted to make room for a new one (as Postfix does under stress), so idle sockets cannot
    hold every slot. Under stress (:data:`STRESS_FRACTION` of the limit) idle time-outs are
    shortened to ``stress_timeout``, those already running too when stress begins.
    """

    def __init__(self, limit: int, per_peer: int, stress_timeout: float) -> None:
        self.limit = limit
        self.per_peer = per_peer
        self.stress_timeout = stress_timeout
        self.active = 0
        self.per_host: collections.Counter[str] = collections.Counter()
        self.open: dict[LimitedSMTP, None] = {}
        self.silent: dict[LimitedSMTP, None] = {}  # insertion-ordered: the oldest first

    def stressed(self) -> bool:
        return self.active >= self.limit * STRESS_FRACTION

    def admit(self, connection: LimitedSMTP, host: str) -> bytes | None:
        """Count ``connection`` in, evicting a silent one if needed; or the ``421`` refusing it."""
        if self.per_host[host] >= self.per_peer:
            return ERR_TOO_MANY_FROM_PEER
        if self.active >= self.limit:
            if not self.silent:
                return ERR_TOO_MANY_CONNECTIONS
            next(iter(self.silent)).evict()
        was_stressed = self.stressed()
        self.active += 1
        self.per_host[host] += 1
        if not was_stressed and self.stressed():
            for other in self.open:
                other.hurry(self.stress_timeout)
        self.open[connection] = None
        self.silent[connection] = None
        return None

    def release(self, connection: LimitedSMTP, host: str) -> None:
        self.active -= 1
        self.per_host[host] -= 1
        if not self.per_host[host]:
            del self.per_host[host]
        self.open.pop(connection, None)
        self.silent.pop(connection, None)


class InboundEnvelope(Envelope):
    """aiosmtpd's envelope, and whether a recipient is one of our signed tokens (then a message
    over the size limit is kept truncated, not refused) and whether it was."""

    def __init__(self) -> None:
        super().__init__()
        self.tokenized = False
        self.truncated = False


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP protocol under a :class:`ConnectionLimit`: refuses connections beyond
    it with ``421``, can be evicted while it has sent nothing, and times out sooner under stress.

    It also accepts DATA lines longer than RFC 5321's 1,000 octets (up to 64 KiB): senders that
    break that rule exist, and refusing their unsubscribe with a permanent ``500`` would lose a
    real request. ``max_message_bytes`` still bounds the whole message. Longer lines are read
    and discarded by aiosmtpd (memory stays bounded) and answered ``500 5.5.2``; the session
    goes on.
    """

    line_length_limit = 65_536

    def __init__(self, handler: Any, *, limit: ConnectionLimit, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._limit = limit
        self._host: str | None = None  # the peer's host while counted in the limit
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._host is None and self.transport is None:  # a new connection, not a STARTTLS upgrade
            peer = transport.get_extra_info("peername")
            host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
            refusal = self._limit.admit(self, host)
            if refusal is not None:
                self._refused = True
                transport.write(refusal)  # type: ignore[attr-defined]
                transport.close()
                log.warning("refused a connection from %s: %s", host, refusal.decode().strip())
                return
            self._host = host
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._host is not None:
            self._limit.silent.pop(self, None)
        super().data_received(data)

    def evict(self) -> None:
        """Make room for a new connection: this one has sent nothing since it was accepted."""
        self._release()
        if self.transport is not None:
            self.transport.write(ERR_EVICTED)  # type: ignore[attr-defined]
            self.transport.close()

    def _create_envelope(self) -> InboundEnvelope:
        return InboundEnvelope()

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")  # as aiosmtpd's, for HELP
    async def smtp_MAIL(self, arg: str | None) -> None:
        """MAIL, with a ``SIZE=`` over the limit left for RCPT to judge: a message to a
        tokenized address is taken whatever its size."""
        limit, self.data_size_limit = self.data_size_limit, None
        try:
            await super().smtp_MAIL(arg)
        finally:
            self.data_size_limit = limit

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """DATA; for a tokenized recipient, a message over the limit is cut to its first
        ``data_size_limit`` bytes (the rest is read and dropped) instead of refused."""
        envelope = self.envelope
        if not (isinstance(envelope, InboundEnvelope) and envelope.tokenized and self.data_size_limit) or arg:
            await super().smtp_DATA(arg)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        read = await self._read_data(self.data_size_limit)
        if read is None:  # the client went away before the end of the message
            return
        content, envelope.truncated = read
        envelope.content = envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def _read_data(self, limit: int) -> tuple[bytes, bool] | None:
        """The message (dot-unstuffed) up to ``limit`` bytes, and whether there was more;
        ``None`` if the connection ended first."""
        kept = bytearray()
        size = 0
        at_line_start = True
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:  # part of a line longer than the buffer
                line = await self._reader.read(exc.consumed)
            except asyncio.IncompleteReadError:
                return None
            except asyncio.CancelledError:  # the connection went away
                self._writer.close()
                raise
            if at_line_start and line == b".\r\n":
                break
            if at_line_start and line.startswith(b"."):
                line = line[1:]
            at_line_start = line.endswith(b"\r\n")
            if size < limit:
                kept += line[: limit - size]
            size += len(line)
        return bytes(kept), size > limit

    async def push(self, status: AnyStr) -> None:
        await super().push(REWORDED.get(status, status) if isinstance(status, str) else status)

    def _reset_timeout(self, duration: float | None = None) -> None:
        if duration is None and self._limit.stressed():
            duration = min(self._limit.stress_timeout, self._timeout_duration)
        super()._reset_timeout(duration)

    def hurry(self, timeout: float) -> None:
        """Stress has begun: close this connection within ``timeout`` unless its time-out
        runs out sooner. aiosmtpd re-arms the time-out per command only, so a message being
        trickled in (DATA) keeps this deadline whatever bytes it sends."""
        handle = self._timeout_handle
        if handle is not None and self.transport is not None and handle.when() - self.loop.time() > timeout:
            super()._reset_timeout(timeout)

    def _release(self) -> None:
        if self._host is not None:
            self._limit.release(self, self._host)
            self._host = None

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._release()
        super().connection_lost(error)


def _over_limit(mail_options: list[str], limit: int | None) -> bool:
    """Whether MAIL announced a ``SIZE=`` over ``limit``."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit() and limit:
            return int(value) > limit
    return False


class InboundHandler:
    """aiosmtpd handler: each hook's return value is the SMTP reply."""

    def __init__(
        self,
        domains: Collection[str],
        writer: EvidenceWriter,
        on_stored: Callable[[int], None],
        clock: Callable[[], Any],
        tokenized: Callable[[str], bool],
    ) -> None:
        self.domains = domains
        self.tokenized = tokenized
        self.writer = writer
        self.on_stored = on_stored
        self.clock = clock
        self.last_data = 0.0  # monotonic time of the last DATA (read by the classifier thread)

    def busy(self) -> bool:
        """Whether messages are arriving right now."""
        return time.monotonic() - self.last_data < 0.25

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        try:  # the domain comes out as normalize_domain makes it, the form [smtp].domains is kept in
            domain = normalize_address(address).email.rpartition("@")[2]
        except OptOutHubError:
            return ERR_BAD_ADDRESS.format(address=address)
        if domain not in self.domains:
            return ERR_RELAY.format(address=address)
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return ERR_TOO_MANY_RCPTS
        tokenized = self.tokenized(address)
        if not tokenized and _over_limit(envelope.mail_options, server.data_size_limit):
            return ERR_TOO_BIG
        if tokenized and isinstance(envelope, InboundEnvelope):
            envelope.tokenized = True
        envelope.rcpt_tos.append(address)
        return OK_RCPT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.last_data = time.monotonic()
        raw = envelope.original_content or b""
        peer = session.peer
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        received = Received(
            raw=bytes(raw),
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            peer=peer_text,
            helo=session.host_name,
            received_at=self.clock(),
            truncated=isinstance(envelope, InboundEnvelope) and envelope.truncated,
        )
        try:
            evidence_id = await self.writer.store_async(received)  # blocking DB work runs in the writer thread
        except StoreError:
            log.exception("could not store a message from %s", peer_text)
            return ERR_STORE
        log.info(
            "smtp message %s stored: peer %s, %d recipient(s), %d bytes%s",
            evidence_id,
            peer_text,
            len(received.rcpt_tos),
            len(raw),
            " (truncated)" if received.truncated else "",
        )
        self.on_stored(evidence_id)
        return OK_QUEUED.format(id=evidence_id)

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session error", exc_info=error)
        return ERR_INTERNAL


class _Controller(Controller):
    """aiosmtpd's threaded controller on a socket bound beforehand (so port 0 works), with the
    connection limit."""

    def __init__(
        self, handler: InboundHandler, sock: socket.socket, limit: ConnectionLimit, **smtp_kwargs: Any
    ) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **smtp_kwargs)
        self._sock = sock
        self._limit = limit

    def factory(self) -> SMTP:
        return LimitedSMTP(self.handler, limit=self._limit, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, backlog=512)


def listening_socket(host: str, port: int, backlog: int = 512) -> socket.socket:
    """A bound, listening TCP socket for the controller (bound first, so port 0 works).

    It is created with ``IPPROTO_TCP`` explicitly: asyncio sets ``TCP_NODELAY`` only on
    accepted sockets whose protocol says TCP, and ``socket.create_server`` leaves it 0, which
    left Nagle's algorithm on and halved the rate of short SMTP sessions.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class SMTPComponent:
    """The ``smtp`` part of ``serve``: the listener, its evidence writer and the classification
    thread, started and stopped together. ``dkim_dns``: the DKIM DNS lookup (``"default"``:
    dkimpy's resolver; ``None``: DKIM is not checked)."""

    def __init__(
        self,
        hub: Hub,
        *,
        host: str | None = None,
        port: int | None = None,
        dkim_dns: DNSLookup | Literal["default"] | None = "default",
    ) -> None:
        self.hub = hub
        smtp = hub.config.smtp
        self.host = smtp.host if host is None else host
        self.port = smtp.port if port is None else port
        self.domains = frozenset(smtp.domains)  # normalized by the configuration
        dns = default_dkim_dns() if isinstance(dkim_dns, str) else dkim_dns
        self.writer = EvidenceWriter(hub)
        self.handler = InboundHandler(self.domains, self.writer, self._stored, hub.clock, self._tokenized)
        self.classifier = Classifier(
            hub, dkim_dns=dns, delay=float(os.environ.get(DELAY_ENV) or 0), busy=self.handler.busy
        )
        self.controller: _Controller | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> None:
        smtp = self.hub.config.smtp
        try:
            sock = listening_socket(self.host, self.port)
        except OSError as exc:
            raise OptOutHubError(f"SMTP cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self.port = sock.getsockname()[1]
        self.controller = _Controller(
            self.handler,
            sock,
            ConnectionLimit(smtp.max_connections, smtp.max_connections_per_peer, smtp.stress_timeout_seconds),
            server_hostname=smtp.domains[0],
            ident="optout-hub",
            data_size_limit=smtp.max_message_bytes,
            timeout=smtp.timeout_seconds,
            enable_SMTPUTF8=True,
            decode_data=False,
        )
        self.classifier.start()
        self.controller.start()
        print(f"optout-hub: SMTP listening on {self.host}:{self.port}", flush=True)

    def _tokenized(self, address: str) -> bool:
        """Whether ``address`` is ``unsub-<token>@`` one of our domains with a token we signed."""
        token = recipient_token(address, self.domains)
        if token is None:
            return False
        try:
            self.hub.signer.verify(token)
        except TokenError:
            return False
        return True

    def _stored(self, evidence_id: int) -> None:
        self.classifier.submit(evidence_id)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        self.writer.close()
        self.classifier.stop()
