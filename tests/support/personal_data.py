"""Looking for an address in every stored value: every table and every text, binary and JSON
column of the real schema (read with SQLAlchemy's inspector, so a table added later is
scanned without changing the tests)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from sqlalchemy import JSON, Connection, Engine, LargeBinary, String, Text, column, inspect, select, table


def _searchable(type_: Any) -> bool:
    return isinstance(type_, (String, Text, LargeBinary, JSON)) or type(type_).__name__ in ("JSONB", "BYTEA")


def _text(value: Any) -> str:
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("latin-1")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def traces(engine: Engine, email: str) -> list[tuple[str, str, str]]:
    """Where ``email`` still shows, in any case: the address, its URL-encoded form or its local
    part, as ``(table, column, excerpt)``. Empty when nothing is left."""
    lowered = email.lower()
    needles = {lowered, quote(lowered, safe="").lower(), lowered.split("@")[0]}
    found = []
    with engine.connect() as conn:  # one connection: on SQLite it holds the write lock
        for name, columns in scanned_columns(conn).items():
            if not columns:
                continue
            for row in conn.execute(select(*(column(c) for c in columns)).select_from(table(name))):
                for col, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    text = _text(value).lower()
                    for needle in needles:
                        at = text.find(needle)
                        if at >= 0:
                            found.append((name, col, text[max(at - 30, 0) : at + 40]))
    return found


def scanned_columns(bind: Engine | Connection) -> dict[str, list[str]]:
    """The columns :func:`traces` reads, per table (to show the scan covers the schema)."""
    schema = inspect(bind)
    return {
        name: [c["name"] for c in schema.get_columns(name) if _searchable(c["type"])]
        for name in schema.get_table_names()
    }
