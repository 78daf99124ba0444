"""Translate the core's exceptions into HTTP answers: JSON ``{"error": ...}``, 4xx for bad
input, 503 with ``Retry-After`` when the store fails anywhere in a request (so the sender
retries), never a bare 500 page. Pages answer browsers with HTML on the same terms
(:mod:`webhooks.pages.rendering`)."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from adapters.errors import ErasureError, PayloadError, SignatureError, StoreError

log = logging.getLogger(__name__)

# A recording transaction's failure is a StoreError; a read anywhere else raises SQLAlchemy's own.
STORE_FAILURES = (StoreError, SQLAlchemyError)
RETRY_AFTER_SECONDS = 30


def error_response(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def bearer_refused() -> Response:
    response = error_response(401, "missing or invalid bearer token")
    response.headers["WWW-Authenticate"] = 'Bearer realm="optout-hub"'
    return response


def store_failed(exc: Exception) -> None:
    """Log a store failure without its SQL or parameters (they may hold addresses and tokens)."""
    log.error("store error: %s", exc if isinstance(exc, StoreError) else exc.__class__.__name__)


def retry_later(response: Response) -> Response:
    """``response`` as the answer to a request the store could not serve: 503, ``Retry-After``."""
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def store_unavailable(exc: Exception) -> Response:
    store_failed(exc)
    return retry_later(error_response(503, "temporarily unable to store the request; retry"))


def init_app(app: Flask) -> None:
    @app.errorhandler(PayloadError)
    def _payload(exc: PayloadError) -> Response:
        return error_response(400, str(exc))

    @app.errorhandler(ErasureError)
    def _erasure(exc: ErasureError) -> Response:
        return error_response(409, str(exc))

    @app.errorhandler(SignatureError)
    def _signature(exc: SignatureError) -> Response:
        return error_response(403, "invalid signature")

    for failure in STORE_FAILURES:
        app.register_error_handler(failure, store_unavailable)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal error")
