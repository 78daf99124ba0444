"""Translate the core's exceptions into HTTP answers: JSON ``{"error": ...}``, 4xx for bad
input, 503 when the store fails (so the sender retries), never a bare 500 page."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from adapters.errors import PayloadError, SignatureError, StoreError

log = logging.getLogger(__name__)


def error_response(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def bearer_refused() -> Response:
    response = error_response(401, "missing or invalid bearer token")
    response.headers["WWW-Authenticate"] = 'Bearer realm="optout-hub"'
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(PayloadError)
    def _payload(exc: PayloadError) -> Response:
        return error_response(400, str(exc))

    @app.errorhandler(SignatureError)
    def _signature(exc: SignatureError) -> Response:
        return error_response(403, "invalid signature")

    @app.errorhandler(StoreError)
    def _store(exc: StoreError) -> Response:
        log.error("store error: %s", exc)
        return error_response(503, "temporarily unable to store the request; retry")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal error")
