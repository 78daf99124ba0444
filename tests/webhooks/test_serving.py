"""BackgroundServer: waitress in a thread, stopped from its own loop thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from adapters.config import Config
from adapters.hub import Hub
from webhooks import create_app
from webhooks.serving import BackgroundServer

MAILCHIMP_SECRET = "mc-webhook-secret-3f9a1c0e7b2d"


def slow_app(started: threading.Event):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            started.set()
            time.sleep(0.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    return app


def test_a_header_line_over_64_kib_is_answered_never_a_500() -> None:
    server = BackgroundServer(slow_app(threading.Event()), host="127.0.0.1", port=0, threads=2, ident="test")
    server.start()
    try:
        for size in (70 * 1024, 300 * 1024):
            r = requests.get(server.url + "/", headers={"X-Long": "a" * size}, timeout=10)
            assert r.status_code < 500, (size, r.status_code)
        assert requests.get(server.url + "/", timeout=5).text == "done"
    finally:
        server.stop()


def test_a_content_length_too_long_for_int_is_400() -> None:
    """waitress alone drops such a connection unanswered (int() refuses over 4,300 digits)."""
    server = BackgroundServer(slow_app(threading.Event()), host="127.0.0.1", port=0, threads=2, ident="test")
    server.start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 400 ")
    finally:
        server.stop()


def test_stop_lets_the_request_under_way_finish_then_closes_everything() -> None:
    started = threading.Event()
    server = BackgroundServer(slow_app(started), host="127.0.0.1", port=0, threads=2, ident="test")
    server.start()
    idle = requests.Session()
    assert idle.get(server.url + "/", timeout=5).text == "done"  # a keep-alive connection stays open
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(requests.get, server.url + "/slow", timeout=10)
        assert started.wait(5)
        server.stop()
        response = slow.result()
    assert (response.status_code, response.text) == (200, "done")
    assert not server._thread.is_alive()
    assert server.server._map == {}
    host, port = server.url.removeprefix("http://").split(":")
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()
    with pytest.raises(requests.ConnectionError):
        idle.get(server.url + "/", timeout=2)


@pytest.fixture
def held_connections() -> Iterator[Callable[[str, int], list[socket.socket]]]:
    """Open ``n`` connections to a URL: half idle, half trickling a request line a byte a second."""
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def hold(url: str, n: int) -> list[socket.socket]:
        host, port = url.removeprefix("http://").split(":")
        for i in range(n):
            sock = socket.create_connection((host, int(port)), timeout=5)
            if i % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            sockets.append(sock)
        threading.Thread(target=trickle, args=(sockets[1::2],), daemon=True).start()
        return sockets

    def trickle(slow: list[socket.socket]) -> None:
        while not stop.wait(1):
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"a")

    yield hold
    stop.set()
    for sock in sockets:
        sock.close()


def test_idle_and_trickling_connections_do_not_stop_others_being_served(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    serve_app: Callable[[Any], Any],
    held_connections: Callable[[str, int], list[socket.socket]],
) -> None:
    """110 connections held open once made webhooks and /healthz answer nothing (waitress'
    default limit is 100 connections, each kept 120 s and renewed by any byte)."""
    hub = make_hub(
        make_config(
            {"providers": {"mailchimp": {"enabled": True, "lists": ["abc123"]}}},
            env={"MAILCHIMP_API_KEY": "0123456789abcdef-us6", "MAILCHIMP_WEBHOOK_SECRET": MAILCHIMP_SECRET},
        )
    )
    url = serve_app(create_app(hub=hub)).url
    held_connections(url, 110)
    time.sleep(1.5)  # the trickling ones have sent more since
    started = time.monotonic()
    assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    form = {"type": "unsubscribe", "fired_at": "2026-11-24 11:59:00", "data[email]": "ann@example.com"}
    form |= {"data[list_id]": "abc123", "data[action]": "unsub"}
    r = requests.post(f"{url}/webhooks/mailchimp/{MAILCHIMP_SECRET}", data=form, timeout=5)
    assert r.status_code == 200 and r.json()["stored"] == 1
    assert time.monotonic() - started < 2


def test_a_request_trickled_past_the_deadline_loses_its_connection() -> None:
    server = BackgroundServer(
        slow_app(threading.Event()), host="127.0.0.1", port=0, threads=2, ident="test", request_deadline=2
    )
    server.start()
    try:
        host, port = server.url.removeprefix("http://").split(":")
        kept = requests.Session()
        assert kept.get(server.url + "/", timeout=5).text == "done"  # idle between requests: not swept
        with socket.create_connection((host, int(port)), timeout=1) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
            started, closed = time.monotonic(), False
            while not closed and time.monotonic() - started < 10:
                try:
                    slow.sendall(b"a")  # each byte would renew waitress' own idle timeout
                    closed = slow.recv(1) == b""
                except TimeoutError:
                    pass
                except OSError:
                    closed = True
            assert closed and 2 <= time.monotonic() - started < 6
        assert kept.get(server.url + "/", timeout=5).text == "done"
    finally:
        server.stop()
