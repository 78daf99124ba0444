"""The one logging configuration: text lines with a timestamp, or JSON objects, each with the
id of the HTTP request it was logged in."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from adapters.config import LoggingConfig
from adapters.logs import REQUEST_ID, configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def _log_twice() -> None:
    log = logging.getLogger("optout.test")
    log.info("outside a request")
    token = REQUEST_ID.set("req-7")
    try:
        log.warning("inside %s", "a request")
    finally:
        REQUEST_ID.reset(token)


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_carry_a_timestamp_and_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingConfig(level="INFO", format="text"))
    _log_twice()
    outside, inside = capsys.readouterr().err.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(rf"{stamp} INFO optout\.test: outside a request", outside)
    assert re.fullmatch(rf"{stamp} WARNING optout\.test \[req-7\]: inside a request", inside)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_are_one_object_each(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingConfig(level="WARNING", format="json"))
    _log_twice()
    (line,) = capsys.readouterr().err.splitlines()  # INFO is below the level
    record = json.loads(line)
    assert {k: record[k] for k in ("level", "logger", "request_id", "message")} == {
        "level": "WARNING",
        "logger": "optout.test",
        "request_id": "req-7",
        "message": "inside a request",
    }
    assert re.match(r"\d{4}-\d\d-\d\d", record["time"])
