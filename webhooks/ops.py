"""Operator endpoints: ``/healthz`` (checks the database) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from adapters.store import database
from webhooks.context import current_hub
from webhooks.errors import error_response

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    try:
        database.ping(current_hub().engine)
    except SQLAlchemyError as exc:
        log.error("healthz: database unavailable: %s", exc.__class__.__name__)
        return error_response(503, "database unavailable")
    return jsonify(status="ok", database="ok")


@bp.get("/metrics")
def metrics() -> Response:
    return Response(current_hub().metrics.render(), mimetype=CONTENT_TYPE_LATEST)
