"""Bulk statements that carry many rows in ONE JSON parameter.

SQLAlchemy's executemany binds and type-processes every value of every row in Python; for
the store's hot path (1,000-event batches) that costs more than the database work. Here the
rows travel as one JSON array and the database unpacks it (``json_each`` on SQLite,
``jsonb_array_elements`` on PostgreSQL) inside ``INSERT ... SELECT``, so ``ON CONFLICT`` and
``RETURNING`` still apply. Statements are built once per (dialect, table, columns) and cached.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    String,
    Table,
    bindparam,
    cast,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from sqlalchemy.types import JSON

PAYLOAD = "bulk_rows"


def _is_time(column: Any) -> bool:
    return isinstance(column.type, DateTime) or isinstance(getattr(column.type, "impl", None), DateTime)


def _dialect(bind: Session | Connection | Engine) -> str:
    return (bind.get_bind() if isinstance(bind, Session) else bind).dialect.name


@functools.cache
def _rows_select(dialect: str, table: Table, names: tuple[str, ...]) -> Select[Any]:
    """SELECT yielding the rows of the JSON array parameter, typed as ``table``'s columns."""
    param = bindparam(PAYLOAD, type_=String)
    columns: list[ColumnElement[Any]] = []
    if dialect == "postgresql":
        elements = func.jsonb_array_elements(cast(param, postgresql.JSONB)).table_valued("value")
        for i, name in enumerate(names):
            col_type = table.c[name].type
            value: ColumnElement[Any] = (
                elements.c.value.op("->")(i)
                if isinstance(col_type, JSON)
                else cast(elements.c.value.op("->>")(i), col_type)
            )
            columns.append(value.label(name))
        return select(*columns).select_from(elements)
    elements = func.json_each(param).table_valued("value")
    for i, name in enumerate(names):
        extracted = func.json_extract(elements.c.value, f"$[{i}]")
        # json_extract gives objects back as text; json() keeps SQL NULL for a JSON null
        columns.append((func.json(extracted) if isinstance(table.c[name].type, JSON) else extracted).label(name))
    # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT (a parsing ambiguity).
    return select(*columns).select_from(elements).where(true())


def _time_encoder(postgres: bool) -> Callable[[datetime], Any]:
    """Datetime → what the driver stores: psycopg takes aware datetimes; SQLite gets
    SQLAlchemy's own DATETIME text form in UTC (cached: a batch shares few distinct times)."""
    if postgres:
        return lambda value: value
    cache: dict[datetime, str] = {}

    def encode(value: datetime) -> str:
        text = cache.get(value)
        if text is None:
            text = cache[value] = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return text

    return encode


def driver_time(session: Session, value: datetime) -> Any:
    """One time as the driver stores it (for rows built ready for :func:`execute_many`'s
    ``encoded``)."""
    return _time_encoder(_dialect(session) == "postgresql")(value)


def driver_rows(
    session: Session | Engine, table: Table, names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[list[Any]]:
    """Rows encoded for the driver's executemany (see :func:`insert_new`'s ``prepared``)."""
    return _prepare(session, table, names, rows, as_json=False)


def _prepare(
    session: Session | Engine, table: Table, names: Sequence[str], rows: Sequence[Sequence[Any]], *, as_json: bool
) -> list[list[Any]]:
    """Rows with times and JSON values encoded for the driver, or for a JSON payload."""
    postgres = _dialect(session) == "postgresql"
    encode: Callable[[datetime], Any] = (
        (lambda value: value.isoformat()) if as_json and postgres else _time_encoder(postgres)
    )
    times = [i for i, n in enumerate(names) if _is_time(table.c[n])]
    blobs = [] if as_json else [i for i, n in enumerate(names) if isinstance(table.c[n].type, JSON)]
    out = [list(row) for row in rows]
    texts: dict[int, str] = {}  # JSON of each distinct object: rows often share one (imports)
    for row in out:
        for i in times:
            if row[i] is not None:
                row[i] = encode(row[i])
        for i in blobs:
            value = row[i]
            if value is not None:
                text = texts.get(id(value))
                if text is None:
                    text = texts[id(value)] = json.dumps(value)
                row[i] = text
    return out


def encode_rows(session: Session, table: Table, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, str]:
    """The parameter for :func:`bulk_insert`: ``rows`` are value lists in the order of ``names``."""
    return {PAYLOAD: json.dumps(_prepare(session, table, names, rows, as_json=True), separators=(",", ":"))}


def _insert_sql(table: Table, names: Sequence[str], mark: str) -> str:
    """``INSERT INTO table (names) VALUES (mark, ...)``, for the driver's own executemany."""
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})"


Merge = Literal["least", "greatest", "sum"]


def _merged(how: Merge, stored: str, new: str, postgres: bool) -> str:
    if how == "sum":
        return f"{stored} + {new}"
    function = {"least": ("LEAST", "min"), "greatest": ("GREATEST", "max")}[how][0 if postgres else 1]
    return f"{function}({stored}, {new})"


def execute_many(
    session: Session,
    table: Table,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    upsert_on: Sequence[str] = (),
    merge: Mapping[str, Merge] = {},
    encoded: bool = False,
) -> None:
    """``INSERT`` many rows through the driver's own executemany (no per-value processing in
    SQLAlchemy); with ``upsert_on``, conflicting rows update every other column to the new
    row's value, or, for a column in ``merge``, to the least, greatest or sum of the stored
    and the new value. ``encoded``: the rows are tuples whose times and JSON values are
    already as the driver stores them (:func:`driver_time`), passed on as they are."""
    if not rows:
        return
    postgres = _dialect(session) == "postgresql"
    sql = _insert_sql(table, names, "%s" if postgres else "?")
    if upsert_on:
        updates = ", ".join(
            f"{n} = {_merged(merge[n], f'{table.name}.{n}', f'excluded.{n}', postgres)}"
            if n in merge
            else f"{n} = excluded.{n}"
            for n in names
            if n not in upsert_on
        )
        sql += f" ON CONFLICT ({', '.join(upsert_on)}) DO UPDATE SET {updates}"
    params = rows if encoded else [tuple(r) for r in _prepare(session, table, names, rows, as_json=False)]
    session.connection().exec_driver_sql(sql, params)


def insert_new(
    session: Session,
    table: Table,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    unique: Sequence[str],
    returning: Sequence[str],
    prepared: Sequence[Sequence[Any]] | None = None,
) -> list[Any]:
    """Insert rows, skipping those that conflict on ``unique``; return the ``returning``
    columns of the rows actually inserted (times raw, for :func:`parse_time`).

    PostgreSQL: one ``INSERT ... SELECT`` from a JSON payload with ``ON CONFLICT DO NOTHING
    RETURNING``, safe under concurrent writers. SQLite: the transaction already holds the
    write lock (``BEGIN IMMEDIATE``), so the rows above the previous largest id are exactly
    this batch's new rows, and the driver's executemany is the fastest way in; when none
    conflicted, SQLite numbered them ``before + 1 ...`` in order (its rowid rule), so they
    need not be read back. ``prepared`` (SQLite) is ``rows`` already passed through
    :func:`driver_rows`, so that the encoding can run before the write lock is taken.
    """
    conn = session.connection()
    if _dialect(session) == "postgresql":
        stmt = (
            bulk_insert(session, table, names)
            .on_conflict_do_nothing(index_elements=list(unique))
            .returning(*(table.c[n] for n in returning))
        )
        return list(conn.execute(stmt, encode_rows(session, table, names, rows)))
    pk = table.primary_key.columns[0]
    before = conn.execute(select(func.coalesce(func.max(pk), 0))).scalar_one()
    sql = f"{_insert_sql(table, names, '?')} ON CONFLICT ({', '.join(unique)}) DO NOTHING"
    params = prepared if prepared is not None else _prepare(session, table, names, rows, as_json=False)
    inserted = conn.exec_driver_sql(sql, [tuple(r) for r in params]).rowcount
    if inserted == len(rows):  # no conflict: SQLite gave the rows the ids after ``before``, in order
        key_at = returning.index(pk.name)
        pick = _picker([names.index(n) for n in returning if n != pk.name])
        return [(*(v := pick(row))[:key_at], before + k, *v[key_at:]) for k, row in enumerate(rows, start=1)]
    return list(
        conn.exec_driver_sql(
            f"SELECT {', '.join(returning)} FROM {table.name} WHERE {pk.name} > ? ORDER BY {pk.name}", (before,)
        )
    )


def _picker(indexes: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A function giving a row's values at ``indexes``, always as a tuple (C speed)."""
    if len(indexes) > 1:
        return operator.itemgetter(*indexes)
    return lambda row: tuple(row[i] for i in indexes)


def bulk_insert(session: Session, table: Table, names: Sequence[str]) -> Any:
    """``INSERT INTO table (names) SELECT ...`` over the rows of :func:`encode_rows`, as the
    dialect's insert (so ``on_conflict_*`` and ``returning`` can be added)."""
    dialect = _dialect(session)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).from_select(list(names), _rows_select(dialect, table, tuple(names)))


@functools.lru_cache(maxsize=4096)
def _parse_sqlite_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def parse_time(value: datetime | str) -> datetime:
    """A time read back raw (SQLite text, or a PostgreSQL datetime) as aware UTC."""
    return value if isinstance(value, datetime) else _parse_sqlite_time(value)


def values_table(session: Session, values: Sequence[str]) -> Any:
    """A one-column table (``.c.value``) of ``values`` passed as ONE parameter (a JSON array
    on SQLite, an array on PostgreSQL), to join against: much cheaper than one bound
    parameter per value in an ``IN`` list, and the join probes the primary key per value."""
    if _dialect(session) == "postgresql":
        return func.unnest(cast(literal(list(values)), postgresql.ARRAY(String))).table_valued("value").render_derived()
    return func.json_each(literal(json.dumps(list(values), separators=(",", ":")))).table_valued("value")


def insert_statement(session: Session, model: Any) -> Any:
    """The dialect's INSERT (for ON CONFLICT) on a model's Core table: bulk rows skip the ORM."""
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(model.__table__)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
