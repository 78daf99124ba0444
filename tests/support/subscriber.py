"""A real local HTTP server that receives the hub's outbound webhooks as a subscriber would:
it verifies each request per the Standard Webhooks specification (written here from the spec,
not with the hub's signing code), keeps what it received, and answers with the statuses it is
told to give, in turn (then 204)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 5 * 60  # the spec's suggested window against replays


def new_secret() -> str:
    """A fresh secret in the spec's format: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: datetime) -> bool:
    """The spec's check: some ``v1,`` signature in ``webhook-signature`` (space-separated) equals
    base64(HMAC-SHA256(base64-decoded secret, "{id}.{timestamp}.{body}")), and the timestamp is
    within the tolerance of ``now``."""
    msg_id, stamp, given = (headers.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not msg_id or not stamp.isdigit() or abs(now.timestamp() - int(stamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    for part in given.split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return True
    return False


@dataclasses.dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int  # what the subscriber answered

    @property
    def document(self) -> Any:
        return json.loads(self.body)


class Subscriber:
    """``url`` receives; ``answers`` lists the statuses to give next (a 429 with ``Retry-After:
    120``); ``delay`` seconds pass before each answer; ``received`` keeps every request."""

    def __init__(self, secret: str, now: Callable[[], datetime]) -> None:
        self.secret = secret
        self.answers: list[int] = []
        self.delay = 0.0
        self.received: list[Received] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = verify(owner.secret, headers, body, now=now())
                status = (owner.answers.pop(0) if owner.answers else 204) if ok else 401
                owner.received.append(Received(headers, body, ok, status))
                time.sleep(owner.delay)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "120")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/optout"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
