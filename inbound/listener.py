"""The SMTP listener (aiosmtpd): store the raw message durably, answer, then classify.

- ``RCPT`` is accepted only for ``[smtp].domains``; anything else gets ``550 5.1.1`` and is
  never relayed.
- ``EHLO`` advertises ``SIZE [smtp].max_message_bytes``; larger messages get ``552`` (aiosmtpd
  enforces it while reading ``DATA``).
- ``DATA`` commits one ``evidence`` row (see :mod:`inbound.processing`) before answering
  ``250``; if the write fails the answer is ``451 4.3.0`` so the sending server retries.
  The blocking database work runs in a writer thread, never on the event loop, and
  messages arriving together share one commit.
- Classification runs afterwards in one background thread; rows still ``pending`` at start-up
  (the process died between ``250`` and classification) are classified first.
- Beyond ``[smtp].max_connections`` open connections a new one is answered ``421`` and
  closed; a connection idle for ``[smtp].timeout_seconds`` is closed, so idle or slow clients
  cannot starve the others.

Test hook: ``OPTOUT_HUB_TEST_CLASSIFY_DELAY`` (seconds, unset in production) delays each
classification, so the crash test can kill the process between ``250`` and classification.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.addresses import normalize_address
from adapters.errors import OptOutHubError, StoreError
from adapters.hub import Hub
from inbound.classify import DNSLookup
from inbound.processing import EvidenceWriter, Received, pending_ids, process_batch, take_batch

log = logging.getLogger(__name__)
if logging.getLogger("mail.log").level == logging.NOTSET:  # aiosmtpd logs every SMTP command at INFO
    logging.getLogger("mail.log").setLevel(logging.WARNING)

DELAY_ENV = "OPTOUT_HUB_TEST_CLASSIFY_DELAY"
MAX_RECIPIENTS = 100

# Replies, named as aiosmtpd's testing/statuscodes.py names them.
OK_RCPT = "250 2.1.5 OK"
OK_QUEUED = "250 2.0.0 OK: message stored as {id}"
ERR_RELAY = "550 5.1.1 <{address}>: recipient not accepted here (this server does not relay)"
ERR_BAD_ADDRESS = "553 5.1.3 <{address}>: malformed address"
ERR_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
ERR_STORE = "451 4.3.0 Could not store the message, try again later"
ERR_INTERNAL = "451 4.3.0 Internal error, try again later"
ERR_TOO_MANY_CONNECTIONS = b"421 4.3.2 Too many connections, try again later\r\n"


def default_dkim_dns() -> DNSLookup:
    """dkimpy's own DNS TXT lookup (dnspython)."""
    from dkim.dnsplug import get_txt

    return get_txt


class ConnectionLimit:
    """Open connections, counted on the server's event loop thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP protocol that refuses connections beyond a limit with ``421``.

    It also accepts DATA lines longer than RFC 5321's 1,000 octets (up to 64 KiB): senders that
    break that rule exist, and refusing their unsubscribe with a permanent ``500`` would lose a
    real request. ``max_message_bytes`` still bounds the whole message.
    """

    line_length_limit = 65_536

    def __init__(self, handler: Any, *, limit: ConnectionLimit, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._limit = limit
        self._counted = False
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted and self._limit.active >= self._limit.limit:
            self._refused = True
            transport.write(ERR_TOO_MANY_CONNECTIONS)  # type: ignore[attr-defined]
            transport.close()
            log.warning("refused a connection: %d open (max_connections)", self._limit.active)
            return
        if not self._counted:
            self._counted = True
            self._limit.active += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._limit.active -= 1
        super().connection_lost(error)


class InboundHandler:
    """aiosmtpd handler: each hook's return value is the SMTP reply."""

    def __init__(
        self, domains: set[str], writer: EvidenceWriter, on_stored: Callable[[int], None], clock: Callable[[], Any]
    ) -> None:
        self.domains = domains
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
        try:
            domain = normalize_address(address).email.rpartition("@")[2]
        except OptOutHubError:
            return ERR_BAD_ADDRESS.format(address=address)
        if domain not in self.domains:
            return ERR_RELAY.format(address=address)
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return ERR_TOO_MANY_RCPTS
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
        )
        try:
            evidence_id = await self.writer.store_async(received)  # blocking DB work runs in the writer thread
        except StoreError:
            log.exception("could not store a message from %s", peer_text)
            return ERR_STORE
        log.info(
            "smtp message %s stored: peer %s, %d recipient(s), %d bytes",
            evidence_id,
            peer_text,
            len(received.rcpt_tos),
            len(raw),
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


class Classifier:
    """One background thread that classifies stored messages, oldest first, in batches.

    Intake comes first: classifying competes with the listener for the interpreter, so while
    messages are arriving (``busy()``) the thread waits, but never more than ``max_defer``
    seconds. A burst is thus acknowledged at full speed and classified right after it; under
    a flood that outlasts the wait, the thread classifies the whole backlog each time, so it
    never falls behind for more than about ``max_defer`` seconds. (An opt-out must be honoured
    within days; seconds of delay cost nothing, a slow ``250`` costs senders.)
    """

    def __init__(
        self,
        hub: Hub,
        *,
        dkim_dns: DNSLookup | None,
        delay: float = 0.0,
        busy: Callable[[], bool] = lambda: False,
        max_batch: int = 100,
        max_defer: float = 5.0,
        max_attempts: int = 5,
    ) -> None:
        self.max_defer = max_defer
        self.hub = hub
        self.dkim_dns = dkim_dns
        self.delay = delay
        self.busy = busy
        self.max_batch = max_batch
        self.max_attempts = max_attempts
        self.queue: queue.Queue[int | None] = queue.Queue()
        self._attempts: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, name="smtp-classifier", daemon=True)
        self._stop_requested = threading.Event()  # ends the test hook's delay early
        self._stopping = threading.Event()

    def start(self) -> None:
        try:
            recovered = pending_ids(self.hub)
        except Exception:
            log.exception("could not list pending inbound messages; they are classified at the next start")
            recovered = []
        if recovered:
            log.info("classifying %d inbound message(s) stored before the last stop", len(recovered))
        for evidence_id in recovered:
            self.queue.put(evidence_id)
        self._thread.start()

    def submit(self, evidence_id: int) -> None:
        self.queue.put(evidence_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (up to ``timeout``); the rest stays pending for the next start."""
        self.queue.put(None)
        self._stop_requested.set()
        self._thread.join(timeout=timeout)
        self._stopping.set()
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while not self._stopping.is_set():
            first = self.queue.get()  # the first message of a burst wakes the thread...
            if first is None:
                return
            deferred_until = time.monotonic() + self.max_defer  # ...which waits for the burst to end
            while self.busy() and time.monotonic() < deferred_until and not self._stopping.is_set():
                time.sleep(0.05)
            flood = self.busy()  # still arriving after the whole wait: drain the backlog now
            while True:
                batch, last = take_batch(self.queue, first, self.max_batch)
                if self.delay:
                    self._stop_requested.wait(self.delay)
                if not self._stopping.is_set():
                    self._process(batch)
                if last or self._stopping.is_set():
                    return
                if not flood:
                    break
                try:
                    first = self.queue.get_nowait()
                except queue.Empty:
                    break
                if first is None:
                    return

    def _process(self, batch: list[int]) -> None:
        try:
            process_batch(self.hub, batch, dkim_dns=self.dkim_dns)
        except Exception:
            for evidence_id in batch:
                attempts = self._attempts.get(evidence_id, 0) + 1
                self._attempts[evidence_id] = attempts
                if attempts < self.max_attempts:
                    threading.Timer(min(2.0**attempts, 60.0), self.queue.put, args=(evidence_id,)).start()
            log.warning(
                "classifying %d message(s) failed; retrying later (they stay pending until done)",
                len(batch),
                exc_info=True,
            )
        else:
            for evidence_id in batch:
                self._attempts.pop(evidence_id, None)


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
    """The ``smtp`` part of ``serve``: listener plus classifier, started and stopped together."""

    def __init__(
        self,
        hub: Hub,
        *,
        host: str | None = None,
        port: int | None = None,
        dkim_dns: DNSLookup | str | None = "default",
    ) -> None:
        self.hub = hub
        smtp = hub.config.smtp
        self.host = smtp.host if host is None else host
        self.port = smtp.port if port is None else port
        self.domains = {normalize_address(f"postmaster@{d}").email.rpartition("@")[2] for d in smtp.domains}
        dns = default_dkim_dns() if dkim_dns == "default" else dkim_dns
        self.writer = EvidenceWriter(hub)
        self.handler = InboundHandler(self.domains, self.writer, self._stored, hub.clock)
        self.classifier = Classifier(
            hub, dkim_dns=dns, delay=float(os.environ.get(DELAY_ENV) or 0), busy=self.handler.busy
        )  # type: ignore[arg-type]
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
            ConnectionLimit(smtp.max_connections),
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

    def _stored(self, evidence_id: int) -> None:
        self.classifier.submit(evidence_id)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
        self.writer.close()
        self.classifier.stop()
