"""A database that refuses opt-out events, as one does during an outage or when a value in a
row is something it cannot take: a trigger on ``events`` (SQLite or PostgreSQL). Evidence rows
(and so the SMTP ``250``) still go through; classification fails."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine


def _create(dialect: str, condition: str) -> list[str]:
    if dialect == "sqlite":
        when = f"WHEN {condition} " if condition else ""
        raise_ = "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        return [f"CREATE TRIGGER refuse_events BEFORE INSERT ON events FOR EACH ROW {when}{raise_}"]
    check = f"IF {condition} THEN RAISE 'refused'; END IF;" if condition else "RAISE 'refused';"
    return [
        f"CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {check} RETURN NEW; END $$",
        "CREATE TRIGGER refuse_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_events()",
    ]


def _drop(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return ["DROP TRIGGER refuse_events"]
    return ["DROP TRIGGER refuse_events ON events", "DROP FUNCTION refuse_events()"]


@contextlib.contextmanager
def events_refused(engine: Engine, email: str | None = None) -> Iterator[None]:
    """While inside, inserting an event fails: every event, or only those for ``email``."""
    condition = f"NEW.email = '{email}'" if email else ""
    with engine.begin() as connection:
        for statement in _create(engine.dialect.name, condition):
            connection.exec_driver_sql(statement)
    try:
        yield
    finally:
        with engine.begin() as connection:
            for statement in _drop(engine.dialect.name):
                connection.exec_driver_sql(statement)
