"""The ``optout-hub`` command (README "Commands"): the one place that wires ``inbound``,
``webhooks`` and the core, reaching the first two only through :data:`CALLER_PARTS`.

Every subcommand takes ``--config PATH`` (else ``$OPTOUT_HUB_CONFIG``, else the defaults).
A configuration error prints one line naming the key and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import importlib.metadata
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import requests
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from adapters import rates_report
from adapters.compliance import audit, honour
from adapters.compliance.deadlines import Limits
from adapters.config import Config, load_config
from adapters.doctor import DNS, Doctor, Level
from adapters.errors import ConfigError, OptOutHubError, PayloadError, ProviderAPIError
from adapters.events import GLOBAL_SCOPE, Kind, MailCategory, topic_scope, utcnow
from adapters.hub import Hub
from adapters.logs import configure_logging
from adapters.metrics import MetricsServer
from adapters.providers import make_clients
from adapters.providers.client import PushClient
from adapters.runtime import tune_gc
from adapters.store import database
from adapters.store.erasure import erase_address
from adapters.store.importer import import_csv, open_csv
from adapters.store.outbox import retry_dead
from adapters.store.queries import address_state, export_suppressions
from adapters.store.rates import DIMENSIONS, rate_table
from adapters.store.recipients import RecipientRequest, issue_tokens
from adapters.worker import reconcile
from adapters.worker.constant_contact import clients_for
from adapters.worker.outbox import Worker
from adapters.worker.retention import purge_expired_evidence

log = logging.getLogger(__name__)


class Component(Protocol):
    """A long-running part of ``serve``: started, then stopped on SIGTERM."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


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
        self.worker = Worker(hub, clients_for(hub, self.http), http=self.http)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.worker.run, args=(self._stop,), name="worker", daemon=True)
        self._reconciler = threading.Thread(
            target=reconcile.run_every, args=(hub, self._stop), name="reconcile", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        if self.worker.hub.config.reconcile.interval_minutes:
            self._reconciler.start()
        print(f"optout-hub: push worker running for {', '.join(self.worker.clients) or 'no provider'}", flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._reconciler.is_alive():
            self._reconciler.join(timeout=60)
        self.http.close()


class MetricsComponent:
    """``/metrics`` on its own port, for a part run alone without the HTTP app."""

    def __init__(self, hub: Hub, port: int) -> None:
        self.hub = hub
        self.port = port
        self.server: MetricsServer | None = None

    def start(self) -> None:
        host = self.hub.config.metrics.host
        self.server = self.hub.metrics.serve(host, self.port)
        print(f"optout-hub: metrics on http://{host}:{self.server.port}/metrics", flush=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


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
        elif part == "metrics-smtp":
            built.append(MetricsComponent(hub, hub.config.metrics.smtp_port))
        elif part == "metrics-worker":
            built.append(MetricsComponent(hub, hub.config.metrics.worker_port))
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
    """``smtp``, ``web`` or ``worker`` alone; the first and last serve ``/metrics`` on
    ``[metrics] <part>_port`` when it is set (``web`` serves it at its own ``/metrics``)."""

    def run(args: argparse.Namespace, config: Config) -> int:
        port = {"smtp": config.metrics.smtp_port, "worker": config.metrics.worker_port}.get(part, 0)
        return run_components(Hub.open(config), [part, f"metrics-{part}"] if port else [part])

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
            state = address_state(session, args.email, category=MailCategory(args.category), policy=hub.policy)
    finally:
        hub.close()
    json.dump(state, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def cmd_erase(args: argparse.Namespace, config: Config) -> int:
    """Erase one address (README "Erasure"), or purge the evidence past its retention."""
    if (args.email is None) == (not args.expired_evidence):
        raise OptOutHubError("give an EMAIL to erase, or --expired-evidence")
    hub = Hub.open(config)
    try:
        if args.expired_evidence:
            purged = purge_expired_evidence(hub)
            print(f"purged {purged} evidence rows (retention.evidence_days = {config.retention.evidence_days})")
            return 0
        with hub.sessions.begin() as session:
            result = erase_address(session, args.email, erasure_key=hub.policy.erasure_key, now=hub.clock())
    finally:
        hub.close()
    json.dump(result.as_json(), sys.stdout, indent=2)
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
            tallies = Worker(hub, clients_for(hub, http), http=http).drain()
    finally:
        hub.close()
    if not tallies:
        print("no provider enabled")
    for slug, tally in tallies.items():
        print(f"{slug}: pushed {tally.pushed}, retried {tally.retried}, dead {tally.dead}")
        for row_id, email, scope, detail in tally.failures:
            print(f"  dead: row {row_id} {email} {scope}: {detail}")
    return 0


@contextlib.contextmanager
def provider_clients(config: Config) -> Iterator[dict[str, PushClient]]:
    """Every enabled provider's push client, for a one-off command (Constant Contact's tokens
    live in the store, so then the hub is opened too)."""
    hub = Hub.open(config) if config.providers.constant_contact.enabled else None
    try:
        with requests.Session() as http:
            yield clients_for(hub, http) if hub else make_clients(config, http, now=utcnow)
    finally:
        if hub is not None:
            hub.close()


def cmd_reconcile(args: argparse.Namespace, config: Config) -> int:
    hub = Hub.open(config)
    try:
        lines = reconcile.run_command(hub, provider=args.provider, since=args.since, full=args.full, stream=sys.stderr)
    finally:
        hub.close()
    print("\n".join(lines))
    return 1 if any("; error: " in line for line in lines) else 0


def cmd_outbox_retry(args: argparse.Namespace, config: Config) -> int:
    """Put a provider's dead rows back in the queue in one statement; print how many."""
    since = _iso_option("--since", args.since)
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
    with provider_clients(config) as clients:
        for slug, client in clients.items():
            try:
                print(f"{slug}: ok ({client.check()})")
            except ProviderAPIError as exc:
                failed += 1
                print(f"{slug}: error: {str(exc).removeprefix(slug + ': ')}")
    if not clients:
        print("no provider enabled")
    return 1 if failed else 0


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    """Every check of :mod:`adapters.doctor`, one line each; exit 1 if any is an error."""
    engine = database.make_engine(config.database.url)
    try:
        with provider_clients(config) as clients, requests.Session() as http:
            findings = Doctor(config, engine, http, DNS(args.nameserver), clients, utcnow, args.sending_domain).run()
    finally:
        engine.dispose()
    for finding in findings:
        print(finding.line())
    return 1 if any(f.level is Level.ERROR for f in findings) else 0


def _sending_domain(value: str) -> tuple[str, str]:
    domain, _, selector = value.partition(":")
    if not domain or not selector:
        raise argparse.ArgumentTypeError("expected DOMAIN:SELECTOR, e.g. example.com:s1")
    return domain, selector


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    since = _iso_option("--since", args.since)
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


def _iso_option(name: str, value: str | None) -> datetime | None:
    """An ``--since``/``--until`` value: ISO 8601, UTC when it names no zone."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise OptOutHubError(f"{name}: not an ISO 8601 time: {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cmd_report_honour(args: argparse.Namespace, config: Config) -> int:
    """Exit status 1 when an opt-out is past a limit (README "Compliance")."""
    hub = Hub.open(config)
    try:
        now = hub.clock()
        since = _iso_option("--since", args.since) or now - honour.DEFAULT_PERIOD
        with hub.sessions() as session:
            return honour.write_report(
                session,
                sys.stdout,
                since=since,
                now=now,
                limits=Limits(config.compliance.holiday_dates()),
                kinds=honour.opt_out_kinds(config.inbound.suppress_hard_bounces),
                fmt=args.format,
            )
    finally:
        hub.close()


def cmd_audit(args: argparse.Namespace, config: Config) -> int:
    """``audit EMAIL``, ``audit --since --until --format csv [--output FILE]``, ``audit verify
    FILE SIGNATURE`` and ``audit public-key`` (README "Compliance")."""
    since, until = _iso_option("--since", args.since), _iso_option("--until", args.until)
    return audit.run(
        config,
        args.target,
        since=since,
        until=until,
        csv_format=args.format == "csv",
        output=args.output,
        public_key=args.public_key,
    )


def cmd_report_rates(args: argparse.Namespace, config: Config) -> int:
    """Unsubscribe counts and rates (README "Analytics"): one table, or all of them."""
    since, until = rates_report.date_range(args.since, args.until, today=utcnow().date())
    if args.format == "csv" and not args.by:
        raise PayloadError("--format csv prints one table: choose it with --by")
    titles = {t.name: t.title for t in config.topics}
    hub = Hub.open(config)
    try:
        with hub.sessions() as session:
            tables = [
                rate_table(session, by, since=since, until=until, now=utcnow(), titles=titles)
                for by in ([args.by] if args.by else DIMENSIONS)
            ]
    finally:
        hub.close()
    sys.stdout.write(rates_report.render(tables, args.format))
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
    p = add("reconcile", cmd_reconcile, "pull opt-outs back from the providers; print per provider what it found")
    p.add_argument("--provider", metavar="SLUG", help="only this provider")
    p.add_argument("--since", metavar="ISO", help="pull changes since this time instead of since the last pull")
    p.add_argument("--full", action="store_true", help="the backfill: everything each provider holds")
    p = add("status", cmd_status, "print an address's state as JSON")
    p.add_argument("email")
    p.add_argument("--category", choices=[c.value for c in MailCategory], default="marketing")
    p = add("erase", cmd_erase, "erase an address's personal data, keeping it suppressed under a keyed hash")
    p.add_argument("email", nargs="?")
    p.add_argument("--expired-evidence", action="store_true", help="purge raw evidence past [retention] evidence_days")
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
    p = add("doctor", cmd_doctor, "check the configuration against what mailbox providers and the hub need")
    p.add_argument(
        "--sending-domain",
        metavar="DOMAIN:SELECTOR",
        type=_sending_domain,
        action="append",
        default=[],
        help="a domain your campaigns are sent from and its DKIM selector (repeatable)",
    )
    p.add_argument("--nameserver", metavar="HOST[:PORT]", help="ask this DNS server instead of the system's")
    p = add("export", cmd_export, "print every suppressed address with scope, kind, source, first and last time")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("--since", metavar="ISO", help="only addresses changed at or after this time")
    p = add("report", lambda a, c: 2, "compliance and analytics reports")
    rsub = p.add_subparsers(dest="report_command", required=True, metavar="SUBCOMMAND")
    p = rsub.add_parser("honour", parents=[common], help="time to honour each opt-out; exit 1 if one is past a limit")
    p.add_argument("--since", metavar="ISO", help="requests received at or after this time (default: 30 days ago)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_report_honour)
    p = rsub.add_parser("rates", parents=[common], help="unsubscribe counts and rates over a date range")
    p.add_argument("--since", metavar="ISO", help="first UTC day (default: 30 days up to --until)")
    p.add_argument("--until", metavar="ISO", help="last UTC day, included (default: today)")
    p.add_argument("--by", choices=DIMENSIONS, help="one table (default: all)")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text")
    p.set_defaults(func=cmd_report_rates)
    p = add("audit", cmd_audit, "an address's full history (JSON), or a period's signed CSV export; verify one")
    p.add_argument("target", nargs="*", metavar="EMAIL | verify FILE SIGNATURE | public-key")
    p.add_argument("--since", metavar="ISO", help="period export: events received at or after this time")
    p.add_argument("--until", metavar="ISO", help="period export: events received before this time")
    p.add_argument("--format", choices=["json", "csv"], default="json", help="csv: the period export")
    p.add_argument("--output", metavar="FILE", help="write the export here and its signature to FILE.sig")
    p.add_argument("--public-key", metavar="BASE64", help="verify with this key (default: the configured one's)")
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
        configure_logging(config.logging)
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
