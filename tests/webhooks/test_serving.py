"""BackgroundServer: waitress in a thread, stopped from its own loop thread."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from webhooks.serving import BackgroundServer


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
