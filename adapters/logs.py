"""Logging for every process (README "Logs and metrics"): one configuration, built from
``[logging]``, shared by the CLI's processes and gunicorn (``webhooks.gunicorn_conf``).

Records are plain text lines with a timestamp, or JSON objects with ``format = "json"``. A
record logged while an HTTP request is handled carries that request's id (``X-Request-Id``),
which the HTTP side sets in :data:`REQUEST_ID`; the core knows nothing of Flask.
"""

from __future__ import annotations

import logging
import logging.config
from contextvars import ContextVar
from typing import Any

from adapters.config import LoggingConfig

REQUEST_ID: ContextVar[str | None] = ContextVar("optout_hub_request_id", default=None)
"""The id of the HTTP request being handled in this context, if any."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or ``None``) and ``request_tag`` (`` [id]`` or empty) to a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        record.request_id = request_id
        record.request_tag = f" [{request_id}]" if request_id else ""
        return True


def logging_config(config: LoggingConfig, *, gunicorn: bool = False) -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` of a process: everything to stderr in one format;
    with ``gunicorn``, gunicorn's own error and access logs too (its ``logconfig_dict``)."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if config.format == "json"
        else {"format": TEXT_FORMAT}
    )
    level = config.level.upper()
    own = {"handlers": ["stderr"], "propagate": False}
    loggers: dict[str, Any] = {"waitress.queue": {"level": "ERROR"}, "alembic": {"level": "WARNING"}}
    if gunicorn:
        loggers |= {"gunicorn.error": {"level": level, **own}, "gunicorn.access": {"level": "INFO", **own}}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"optout_hub": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "optout_hub",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": loggers,
    }


def configure_logging(config: LoggingConfig) -> None:
    logging.config.dictConfig(logging_config(config))
