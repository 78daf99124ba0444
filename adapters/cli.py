"""The ``optout-hub`` command (README "Commands"): the one place that wires ``inbound``,
``webhooks`` and the core, reaching the first two only through :data:`CALLER_PARTS`.

Every subcommand takes ``--config PATH`` (else ``$OPTOUT_HUB_CONFIG``, else the defaults).
A configuration error prints one line naming the key and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.metadata
import json
import logging
import logging.config
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import requests
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from adapters.config import Config, load_config
from adapters.errors import ConfigError, OptOutHubError, ProviderAPIError
from adapters.events import GLOBAL_SCOPE, Kind, topic_scope, utcnow
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.runtime import tune_gc
from adapters.store import database
from adapters.store.importer import import_csv, open_csv
from adapters.store.outbox import retry_dead
from adapters.store.queries import address_state, export_suppressions
from adapters.store.recipients import RecipientRequest, issue_tokens
from adapters.worker.outbox import Worker

log = logging.getLogger(__name__)


class Component(Protocol):
    """A long-running part of ``serve``: started, then stopped on SIGTERM."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


def configure_logging(config: Config) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
            },
            "root": {"level": config.logging.level.upper(), "handlers": ["stderr"]},
            "loggers": {"waitress.queue": {"level": "ERROR"}, "alembic": {"level": "WARNING"}},
        }
    )


CALLER_PARTS = {
    "smtp": "inbound.listener:SMTPComponent",
    "http-app": "webhooks:create_app",
    "http-server": "webhooks.serving:BackgroundServer",
}
"""The parts ``serve`` runs from the packages above the core, as ``module:attribute`` paths
imported when a command runs them: the core never imports its callers (README "How it fits
together"), yet this one command starts them all."""


def load_part(part: str) -> Any:
    """The object :data:`CALLER_PARTS` names for ``part``, imported now."""
    module, _, attribute = CALLER_PARTS[part].partition(":")
    return getattr(importlib.import_module(module), attribute)


class HTTPServer(Component, Protocol):
    """What :class:`HTTPComponent` needs of the server :data:`CALLER_PARTS` names."""

    url: str


class HTTPComponent:
    """The Flask app under waitress, in a thread."""

    def __init__(self, hub: Hub) -> None:
        create_app, server = load_part("http-app"), load_part("http-server")
        http = hub.config.http
        self.server: HTTPServer = server(
            create_app(hub=hub),
            host=http.host,
            port=http.port,
            threads=http.threads,
            ident="optout-hub",
            max_body=http.max_content_length,
        )

    def start(self) -> None:
        self.server.start()
        print(f"optout-hub: HTTP listening on {self.server.url}", flush=True)

    def stop(self) -> None:
        self.server.stop()


class WorkerComponent:
    """The push worker in a thread; on stop it finishes the call under way, then returns."""

    def __init__(self, hub: Hub) -> None:
        self.http = requests.Session()
        self.worker = Worker(hub, make_clients(hub.config, self.http, now=hub.clock), http=self.http)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.worker.run, args=(self._stop,), name="worker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        print(f"optout-hub: push worker running for {', '.join(self.worker.clients) or 'no provider'}", flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.http.close()


def _components(hub: Hub, parts: Sequence[str]) -> list[Component]:
    """Build the parts named in ``parts`` (``smtp``, ``http``, ``worker``)."""
    built: list[Component] = []
    for part in parts:
        if part == "smtp":
            smtp_component: Callable[[Hub], Component] = load_part("smtp")
            built.append(smtp_component(hub))
        elif part == "http":
            built.append(HTTPComponent(hub))
        elif part == "worker":
            built.append(WorkerComponent(hub))
    return built


def serve_parts(config: Config) -> list[str]:
    """What ``serve`` runs: everything, except the push worker where ``[worker] enabled`` is
    false (it then runs elsewhere, as ``optout-hub worker`` with the same configuration)."""
    return ["smtp", "http", "worker"] if config.worker.enabled else ["smtp", "http"]


SIGNAL_CHECK_SECONDS = 0.5


def run_components(hub: Hub, parts: Sequence[str]) -> int:
    """Start the parts, wait for SIGINT/SIGTERM, stop them in reverse order, exit 0."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    components = _components(hub, parts)
    started: list[Component] = []
    try:
        for component in components:
            component.start()
            started.append(component)
        tune_gc()
        print("optout-hub: ready (stop with Ctrl-C or SIGTERM)", flush=True)
        # Wait in short turns: the kernel may deliver the signal to any thread, and Python runs
        # the handler only when the main thread next runs Python code, which an untimed wait
        # would never do.
        while not stop.wait(SIGNAL_CHECK_SECONDS):
            pass
        print("optout-hub: shutting down", flush=True)
    finally:
        for component in reversed(started):
            component.stop()
        hub.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


# --- commands ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    hub = Hub.open(config)
    print(f"optout-hub: database {hub.engine.url.render_as_string(hide_password=True)}", flush=True)
    parts = serve_parts(config)
    if "worker" not in parts:
        print("optout-hub: push worker off here ([worker] enabled = false)", flush=True)
    return run_components(hub, parts)


def cmd_part(part: str) -> Callable[[argparse.Namespace, Config], int]:
    def run(args: argparse.Namespace, config: Config) -> int:
        return run_components(Hub.open(config), [part])

    return run


def cmd_db_upgrade(args: argparse.Namespace, config: Config) -> int:
    engine = database.make_engine(config.database.url)
    try:
        database.upgrade(engine, args.revision)
    finally:
        engine.dispose()
    print(f"optout-hub: database at revision {args.revision}")
    return 0


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    hub = Hub.open(config)
    try:
        with hub.sessions() as session:
            state = address_state(session, args.email)
    finally:
        hub.close()
    json.dump(state, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def cmd_headers(args: argparse.Namespace, config: Config) -> int:
    hub = Hub.open(config)
    try:
        with hub.sessions.begin() as session:
            (issued,) = issue_tokens(
                session, hub.signer, config, [RecipientRequest(args.email, args.topic, args.campaign)], now=hub.clock()
            )
    finally:
        hub.close()
    print(f"List-Unsubscribe: {issued.list_unsubscribe}")
    print(f"List-Unsubscribe-Post: {issued.list_unsubscribe_post}")
    return 0


class ProgressBar:
    """A one-line progress bar on a terminal (``stderr``); nothing when piped."""

    def __init__(self, stream: Any, source: Any) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.buffer = getattr(source, "buffer", None)
        try:
            self.total = os.fstat(source.fileno()).st_size if self.enabled else 0
        except (OSError, ValueError):
            self.total = 0

    def __call__(self, rows: int) -> None:
        if not self.enabled:
            return
        if self.total and self.buffer is not None and self.buffer.seekable():
            frac = min(self.buffer.tell() / self.total, 1.0)
            self.stream.write(f"\r[{'#' * int(frac * 30):<30}] {frac:6.1%} {rows:,} rows")
        else:
            self.stream.write(f"\r{rows:,} rows")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    """Exit status 1 when any line was bad (the good ones are imported all the same)."""
    scope = GLOBAL_SCOPE
    if args.topic:
        if config.topic(args.topic) is None:
            raise ConfigError("topics", f"no topic named {args.topic!r}")
        scope = topic_scope(args.topic)
    hub = Hub.open(config)
    tune_gc()
    try:
        with open_csv(args.file, args.encoding) as stream:
            if args.encoding is None and stream.encoding != "utf-8-sig":
                print(f"note: not UTF-8; read as {stream.encoding} (choose with --encoding)", file=sys.stderr)
            bar = ProgressBar(sys.stderr, stream)
            summary = import_csv(
                hub,
                stream,
                kind=Kind(args.kind),
                scope=scope,
                origin=args.source,
                column=args.column,
                push=not args.no_push,
                progress=bar,
            )
            bar.close()
    except OSError as exc:
        raise OptOutHubError(f"cannot read {args.file}: {exc.strerror}") from None
    finally:
        hub.close()
    print(summary.line())
    return 1 if summary.invalid else 0


def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    hub = Hub.open(config)
    try:
        with requests.Session() as http:
            tallies = Worker(hub, make_clients(config, http, now=hub.clock), http=http).drain()
    finally:
        hub.close()
    if not tallies:
        print("no provider enabled")
    for slug, tally in tallies.items():
        print(f"{slug}: pushed {tally.pushed}, retried {tally.retried}, dead {tally.dead}")
        for row_id, email, scope, detail in tally.failures:
            print(f"  dead: row {row_id} {email} {scope}: {detail}")
    return 0


def cmd_outbox_retry(args: argparse.Namespace, config: Config) -> int:
    """Put a provider's dead rows back in the queue in one statement; print how many."""
    since = parse_since(args.since)
    hub = Hub.open(config)
    try:
        with hub.sessions.begin() as session:
            count = retry_dead(session, args.provider, now=hub.clock(), since=since)
    finally:
        hub.close()
    print(f"{args.provider}: {count} dead rows queued again")
    return 0


def cmd_providers_check(args: argparse.Namespace, config: Config) -> int:
    """One read-only round per enabled provider; exit 1 if any failed."""
    failed = 0
    with requests.Session() as http:
        clients = make_clients(config, http, now=utcnow)
        for slug, client in clients.items():
            try:
                print(f"{slug}: ok ({client.check()})")
            except ProviderAPIError as exc:
                failed += 1
                print(f"{slug}: error: {str(exc).removeprefix(slug + ': ')}")
    if not clients:
        print("no provider enabled")
    return 1 if failed else 0


def parse_since(text: str | None) -> datetime | None:
    """A ``--since`` value: ISO 8601, UTC when it names no zone."""
    if not text:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        raise OptOutHubError(f"--since: not an ISO 8601 time: {text!r}") from None
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    since = parse_since(args.since)
    hub = Hub.open(config)
    try:
        with hub.sessions() as session:
            rows = export_suppressions(session, since=since)
            if args.format == "json":
                sys.stdout.write("[")
                for i, row in enumerate(rows):
                    sys.stdout.write(("," if i else "") + "\n  " + json.dumps(row, ensure_ascii=False))
                sys.stdout.write("\n]\n")
            else:
                writer = csv.DictWriter(
                    sys.stdout,
                    fieldnames=["email", "scope", "kind", "source", "reason", "first_at", "last_at"],
                    lineterminator="\n",
                )
                writer.writeheader()
                writer.writerows(rows)
    finally:
        hub.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    config_help = "TOML configuration (default: $OPTOUT_HUB_CONFIG, else built-in defaults)"
    parser = argparse.ArgumentParser(
        prog="optout-hub", description="Catch every opt-out and push it to every mail provider."
    )
    parser.add_argument("--config", metavar="PATH", help=config_help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('optout-hub')}")
    # Subcommands accept --config too; SUPPRESS keeps a value given before the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace, Config], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    add("serve", cmd_serve, "run the SMTP listener, the HTTP app and the push worker in one process")
    add("smtp", cmd_part("smtp"), "run the SMTP listener alone")
    add("web", cmd_part("http"), "run the HTTP app alone (development; production: gunicorn 'webhooks:create_app()')")
    add("worker", cmd_part("worker"), "run the push worker alone")
    p = add("db", lambda a, c: 2, "database schema commands")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    up = dbsub.add_parser("upgrade", parents=[common], help="create or migrate the schema (Alembic)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)
    add("sync", cmd_sync, "drain the push outbox once and print per provider: pushed, retried, dead")
    p = add("outbox", lambda a, c: 2, "push outbox commands")
    osub = p.add_subparsers(dest="outbox_command", required=True, metavar="SUBCOMMAND")
    retry = osub.add_parser("retry", parents=[common], help="put a provider's dead rows back in the queue")
    retry.add_argument("--provider", required=True, metavar="SLUG")
    retry.add_argument("--since", metavar="ISO", help="only rows that went dead at or after this time")
    retry.set_defaults(func=cmd_outbox_retry)
    p = add("providers", lambda a, c: 2, "provider commands")
    psub = p.add_subparsers(dest="providers_command", required=True, metavar="SUBCOMMAND")
    check = psub.add_parser("check", parents=[common], help="one read-only call per enabled provider: ok, or its error")
    check.set_defaults(func=cmd_providers_check)
    p = add("status", cmd_status, "print an address's state as JSON")
    p.add_argument("email")
    p = add("headers", cmd_headers, "print the List-Unsubscribe headers for one recipient")
    p.add_argument("email")
    p.add_argument("--topic", help="a topic from the configuration")
    p.add_argument("--campaign", help="a campaign id to record with the token")
    p = add("import", cmd_import, "bulk-load a suppression list or a provider's export (CSV)")
    p.add_argument("file", help="CSV file, or - for standard input")
    p.add_argument(
        "--source", metavar="NAME", help="where the list came from: a provider (never pushed back to), or a name"
    )
    p.add_argument("--column", metavar="NAME", help="the address column (default: email, Email Address)")
    p.add_argument("--encoding", help="the file's encoding (default: UTF-8 if it is, else cp1252)")
    p.add_argument("--no-push", action="store_true", help="record only: queue no push to any provider")
    p.add_argument("--kind", choices=[k.value for k in Kind if k is not Kind.RESUBSCRIBE], default="unsubscribe")
    p.add_argument("--topic", help="import as opt-outs of this topic instead of global ones")
    p = add("export", cmd_export, "print every suppressed address with scope, kind, source, first and last time")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("--since", metavar="ISO", help="only addresses changed at or after this time")
    return parser


def database_place(url: str) -> str:
    """Where the database is, for an error line: ``host:port``, or an SQLite file's path; never
    the user or the password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    default_ports = {"postgresql": 5432, "mysql": 3306}
    return f"{parsed.host or 'localhost'}:{parsed.port or default_ports.get(parsed.get_backend_name(), '')}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        configure_logging(config)
        command: Callable[[argparse.Namespace, Config], int] = args.func
        return command(args, config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except OptOutHubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OperationalError:
        print(f"error: database unreachable: {database_place(config.database.url)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
