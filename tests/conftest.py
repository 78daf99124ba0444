"""Shared fixtures.

- ``database_url``: every store-touching test runs on a fresh SQLite file, and also on
  PostgreSQL when ``OPTOUT_HUB_TEST_DATABASE_URL`` is set. PostgreSQL runs get a private
  database per pytest session (so concurrent runs never share tables) and a clean schema
  per test.
- ``clock``: a steppable aware-UTC clock to inject wherever time matters.
- ``make_config`` / ``hub``: a :class:`Config` built in code (no global settings) and the
  wired core on that database.
- ``live_app``: the real Flask app served by waitress on a free port, for real HTTP.
"""

from __future__ import annotations

import email
import email.policy
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapters.config import Config, parse_config
from adapters.hub import Hub
from webhooks.serving import BackgroundServer

PG_ENV = "OPTOUT_HUB_TEST_DATABASE_URL"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TEST_SECRET = "test-token-secret-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789"


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[str | None]:
    """A private PostgreSQL database for this pytest session, dropped at the end."""
    base = os.environ.get(PG_ENV)
    if not base:
        yield None
        return
    url = make_url(base)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    name = f"optouthub_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path, _pg_database: str | None) -> str:
    """A clean, empty database: an SQLite file, or a reset PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optout-hub.db'}"
    assert _pg_database is not None
    return _reset_schema(_pg_database)


@pytest.fixture
def postgresql_url(_pg_database: str | None) -> str:
    """A clean PostgreSQL database, for tests of several processes sharing one database
    (SQLite is one worker per database by design). ``.ci/run`` always provides it."""
    if _pg_database is None:
        if os.environ.get("CI"):  # CI must run it: a missing database is a failure there
            pytest.fail(f"{PG_ENV} is not set: .ci/run sets it for PostgreSQL at 127.0.0.1:5432")
        pytest.skip(f"needs PostgreSQL: set {PG_ENV} (.ci/run sets it)")
    return _reset_schema(_pg_database)


def _reset_schema(url: str) -> str:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


class Clock:
    """A clock that stands still until told to move."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def test_env() -> dict[str, str]:
    """The environment that ``*_env`` keys resolve from in tests."""
    return {"OPTOUT_HUB_SECRET": TEST_SECRET, "OPTOUT_HUB_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture
def make_config(database_url: str, test_env: dict[str, str]) -> Callable[..., Config]:
    """Build a Config from a TOML-shaped dict; the database is the test's."""

    def build(data: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Config:
        data = dict(data or {})
        data.setdefault(
            "security", {"token_secret_env": "OPTOUT_HUB_SECRET", "admin_token_env": "OPTOUT_HUB_ADMIN_TOKEN"}
        )
        config = parse_config(data, {**test_env, **(env or {})})
        return replace(config, database=replace(config.database, url=database_url))

    return build


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
def make_hub(clock: Clock) -> Iterator[Callable[[Config], Hub]]:
    hubs: list[Hub] = []

    def build(config: Config) -> Hub:
        hub = Hub.open(config, clock=clock, upgrade=True)
        hubs.append(hub)
        return hub

    yield build
    for hub in hubs:
        hub.close()


@pytest.fixture
def hub(make_hub: Callable[[Config], Hub], config: Config) -> Hub:
    return make_hub(config)


class LiveServer(BackgroundServer):
    """A WSGI app served by waitress on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        super().__init__(app, host="127.0.0.1", port=0, threads=8, ident="test", name="test-http")
        self.start()


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], LiveServer]]:
    servers: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live_app(hub: Hub, serve_app: Callable[[Any], LiveServer]) -> LiveServer:
    """The real app for ``hub``, over real HTTP."""
    from webhooks import create_app

    return serve_app(create_app(hub=hub))


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --- a local SMTP sink (confirmation mail) ------------------------------------------------


class Sink:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 2.0.0 OK"


def delivered(handler: Sink, count: int, *, settle: float = 0.3) -> list[EmailMessage]:
    """The sink's messages once ``count`` have arrived (sent after the HTTP answer), after
    ``settle`` more seconds in which no other may arrive."""
    deadline = time.monotonic() + 10
    while len(handler.messages) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(settle)
    assert len(handler.messages) == count, [m["Subject"] for m in handler.messages]
    return handler.messages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    """A real SMTP server on a free port that keeps what it receives: (handler, port)."""
    handler, port = Sink(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()
