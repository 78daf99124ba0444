"""The Flask app under waitress in a background thread, with a shutdown that is safe.

``waitress``'s own ``server.close()`` closes the sockets and the wake-up pipe from the calling
thread while the server's loop thread may be inside ``select()`` on them (Pylons/waitress#468:
the loop then fails on a closed descriptor, and a descriptor number it still holds may already
belong to something else). Here the loop runs in short turns and closes everything itself.

waitress' limits are set deliberately (:data:`LIMITS`): with its defaults (100 connections, a
120 s idle timeout checked every 30 s) 100 idle or trickling clients hold every slot, and
webhooks, one-click and ``/healthz`` answer nothing for as long as they stay.
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from typing import Any

from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError

log = logging.getLogger(__name__)

# Idle or slow connections cost waitress a slot and a descriptor, never a thread (a request is
# handed to a thread only once it has fully arrived), so many slots are cheap; poll() instead of
# select() lifts select's ceiling of 1,024 descriptors. A connection that sends nothing for
# channel_timeout seconds is closed at the next cleanup. Behind a reverse proxy, the proxy
# buffers slow clients; these limits are for serve/web exposed directly.
CONNECTION_LIMIT = 1000
LIMITS = {
    "asyncore_use_poll": True,
    "channel_timeout": 15,
    "cleanup_interval": 2,
    "max_request_header_size": 64 * 1024,  # a longer header block is answered 431
    # X-Forwarded-* reach the app, which trusts them only behind [http] trusted_proxy_hops
    # proxies (werkzeug's ProxyFix), the same under waitress as under gunicorn.
    "clear_untrusted_proxy_headers": False,
}
# A client that trickles a byte now and then renews channel_timeout for ever: a request must
# also arrive whole within this many seconds of its first byte, or its connection is closed.
REQUEST_DEADLINE = 30.0


class BackgroundServer:
    """A WSGI app served by waitress from a thread; ``stop()`` lets requests under way finish."""

    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        threads: int,
        ident: str,
        name: str = "http",
        max_body: int | None = None,
        request_deadline: float = REQUEST_DEADLINE,
    ) -> None:
        """``max_body``: bodies longer than this are refused (413) before they are buffered."""
        body = {"max_request_body_size": max_body} if max_body is not None else {}
        self.server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident=ident,
            connection_limit=connection_limit(),
            **LIMITS,
            **body,
        )
        self.server.channel_class = BoundedChannel
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._slow = SlowRequests(request_deadline)

    @property
    def url(self) -> str:
        return f"http://{self.server.effective_host}:{self.server.effective_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, wait up to ``timeout`` for the requests under way, then close every
        connection from the loop thread."""
        server = self.server
        server.accepting = False  # the listening socket is no longer polled from the next turn
        server.task_dispatcher.shutdown(timeout=timeout)
        self._stopping.set()
        try:
            server.trigger.pull_trigger()  # wake the loop now rather than at its next turn
        except OSError as exc:
            log.warning("waitress wake-up pipe unusable (%s); the loop stops at its next turn", exc)
        self._thread.join(timeout=timeout)

    def _serve(self) -> None:
        server = self.server
        adj = server.adj
        swept = time.monotonic()
        while not self._stopping.is_set():
            wasyncore.loop(timeout=adj.asyncore_loop_timeout, map=server._map, use_poll=adj.asyncore_use_poll, count=1)
            if (now := time.monotonic()) - swept >= 1:
                self._slow.sweep(server.active_channels, now)
                swept = now
        for channel in list(server._map.values()):
            # HTTP channels drop their buffers and sockets; the trigger and the listener close.
            channel.handle_close() if hasattr(channel, "requests_lock") else channel.close()


class BoundedRequestParser(HTTPRequestParser):
    """waitress' parser, with a ``Content-Length`` of more than 4,300 digits answered 400: in
    waitress 3.0.2 ``int()``'s ValueError escapes and the connection is dropped unanswered."""

    def parse_header(self, header_plus: bytes) -> None:
        try:
            super().parse_header(header_plus)
        except ValueError as exc:
            raise ParsingError("Content-Length is invalid") from exc


class BoundedChannel(HTTPChannel):
    parser_class = BoundedRequestParser


class SlowRequests:
    """Closes the connections whose current request has been arriving for longer than
    ``deadline`` seconds. Called from the server's loop thread, which owns the channels."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._since: dict[int, tuple[object, float]] = {}  # fd -> (partial request, first seen)

    def sweep(self, channels: dict[int, Any], now: float) -> None:
        since = {}
        for fd, channel in list(channels.items()):
            partial = channel.request  # waitress' parser of a request not yet complete, or None
            if partial is None:
                continue
            seen, started = self._since.get(fd, (partial, now))
            if seen is not partial:
                started = now
            if now - started > self.deadline:
                log.info("http: closing a connection from %s: request not complete in %ss", channel.addr, self.deadline)
                channel.handle_close()
            else:
                since[fd] = (partial, started)
        self._since = since


def connection_limit() -> int:
    """:data:`CONNECTION_LIMIT`, or fewer where the process may open fewer descriptors (some
    are kept for the database, the SMTP listener and files)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(100, min(CONNECTION_LIMIT, soft - 128))
