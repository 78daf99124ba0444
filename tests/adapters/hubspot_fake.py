"""A fake HubSpot contacts API: a real HTTP server in a thread that answers
``POST /crm/v3/objects/contacts/batch/read`` like HubSpot (200, or 207 with ``errors[]`` for
unknown ids) and refuses anything else: another method or path, a wrong bearer token, or a
body that is not the documented shape. It can be "down" (503, or 429 with Retry-After) for
its first calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = "/crm/v3/objects/contacts/batch/read"


class FakeContactsAPI:
    def __init__(self, token: str, contacts: dict[str, str], *, down_for: int = 0, down_status: int = 503) -> None:
        self.token = token
        self.contacts = contacts
        self.down_for = down_for
        self.down_status = down_status
        self.calls: list[list[str]] = []  # ids asked for, per accepted call
        self.refused: list[str] = []  # why a request was refused (a test expects none)
        self.attempts = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._refuse(self, 405, f"method GET {self.path}")

            def do_POST(self) -> None:
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _refuse(self, handler: BaseHTTPRequestHandler, status: int, why: str) -> None:
        self.refused.append(why)
        self._send(handler, status, {"status": "error", "message": why, "category": "VALIDATION_ERROR"})

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        if handler.path != PATH:
            return self._refuse(handler, 404, f"path {handler.path}")
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return self._refuse(handler, 401, "authorization")
        if handler.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self._refuse(handler, 415, "content type")
        try:
            body = json.loads(raw)
            ids = [i["id"] for i in body["inputs"]]
            shape_ok = (
                body["properties"] == ["email"]
                and body.get("propertiesWithHistory", []) == []
                and set(body) <= {"properties", "propertiesWithHistory", "inputs"}
            )
            shape_ok = shape_ok and all(isinstance(i, str) and i.isdigit() for i in ids) and 0 < len(ids) <= 100
        except (ValueError, KeyError, TypeError):
            shape_ok = False
        if not shape_ok:
            return self._refuse(handler, 400, f"body {raw[:200]!r}")
        self.attempts += 1
        if self.attempts <= self.down_for:
            headers = {"Retry-After": "30"} if self.down_status == 429 else {}
            return self._send(handler, self.down_status, {"status": "error", "message": "down"}, headers)
        self.calls.append(ids)
        found = [
            {"id": i, "properties": {"email": self.contacts[i], "hs_object_id": i}, "archived": False}
            for i in ids
            if i in self.contacts
        ]
        missing = [i for i in ids if i not in self.contacts]
        body = {"status": "COMPLETE", "results": found}
        if missing:
            body |= {
                "numErrors": 1,
                "errors": [
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "message": "Could not get some CONTACT objects",
                        "context": {"ids": missing},
                    }
                ],
            }
        self._send(handler, 207 if missing else 200, body)
