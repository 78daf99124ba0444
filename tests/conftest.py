"""Shared fixtures.

- ``database_url``: every store-touching test runs on a fresh SQLite file, and also on
  PostgreSQL when ``OPTOUT_HUB_TEST_DATABASE_URL`` is set. PostgreSQL runs get a private
  database per pytest session (so concurrent runs never share tables) and a clean schema
  per test.
- ``clock``: a steppable aware-UTC clock to inject wherever time matters.
- ``make_config`` / ``hub``: a :class:`Config` built in code (no global settings) and the
  wired core on that database.
- ``live_app``: the real Flask app served by waitress on a free port, for real HTTP.
- ``sink``: a real SMTP server that keeps the mail it is sent.
- ``swaks``: the path of swaks (skips where it is missing, fails under CI).

Hypothesis runs its default budget; ``OPTOUT_HUB_LONG_FUZZ=1`` loads the profile ``long``.

What is not a fixture (the clock, servers, fakes, message builders...) is in ``tests/support``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapters.config import Config, parse_config
from adapters.hub import Hub
from tests.support.clock import Clock
from tests.support.environment import ADMIN_TOKEN, LONG_FUZZ, PG_ENV, TEST_SECRET
from tests.support.prerequisites import require_tool, unavailable
from tests.support.servers import LiveServer, Sink, free_port

settings.register_profile("long", max_examples=20_000, deadline=None)
if LONG_FUZZ:
    settings.load_profile("long")


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
        unavailable(f"needs PostgreSQL: set {PG_ENV} (.ci/run sets it for PostgreSQL at 127.0.0.1:5432)")
    return _reset_schema(_pg_database)


def _reset_schema(url: str) -> str:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


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


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    """A real SMTP server on a free port that keeps what it receives: (handler, port)."""
    handler, port = Sink(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture(scope="session")
def swaks() -> str:
    """The swaks SMTP client, for the end-to-end mail tests."""
    return require_tool("swaks", "apt-get install swaks")
