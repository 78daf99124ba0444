"""SendGrid webhook throughput: durable events/s of optout-hub under gunicorn, beside two
baselines measured in the same run on the same load.

    pip install -e '.[bench]'
    python bench/webhooks.py [--batches 60] [--anymail-batches 6] [--clients 4] [--workers 2] [--rounds 5] \
        [--database-url URL]

The load is signed Event Webhook deliveries of 1,000 opt-out events each (unique addresses
and ``sg_event_id``s; a CRLF after each event as SendGrid sends them), posted by several
client threads over keep-alive connections. Each server runs under gunicorn with the same
worker count, on a fresh SQLite file (optout-hub: or the ``--database-url`` given):

- optout-hub: ``gunicorn 'webhooks:create_app()'``; verify, parse and store every delivery in
  one transaction (evidence + events + suppressions) before the 200;
- django-anymail: its SendGrid tracking webhook (signature verification on) in the minimal
  Django project in ``bench/anymail_site``, with a receiver that stores each event with one
  ``get_or_create`` (Django's default SQLite settings), as its users wire it;
- a bare Flask sink that reads the body and stores nothing (the HTTP ceiling);
- optout-hub again on typical traffic: one opt-out in 50 events, the rest processed,
  delivered, open and click events, which it answers without touching the database.

Durable events/s counts the rows found in the database afterwards, divided by the wall time of
the load. A run lasts about two seconds, and fsync times vary from one second to the next, so
the worst case runs several rounds on fresh databases and the median is reported. Targets:
optout-hub >= 30,000 durable events/s, >= 10x django-anymail.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import keys
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from adapters.store import database
from adapters.store.models import Base

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BATCH = 1000
OPT_OUTS = ("unsubscribe", "unsubscribe", "group_unsubscribe", "spamreport", "bounce")
ENGAGEMENT = ("processed", "delivered", "open", "click")  # what most of SendGrid's traffic is
MIX_EVERY = 50  # the realistic mix: one opt-out in 50 events
EVENTS_PER_SECOND = 100  # event times move forward through the load, as a sending day's do


@dataclass
class Load:
    bodies: list[bytes]
    headers: list[dict[str, str]]
    events: int
    optouts: int


def make_load(key: ec.EllipticCurvePrivateKey, batches: int, offset: int, *, optout_every: int = 1) -> Load:
    """Signed 1,000-event deliveries in which every ``optout_every``-th event is an opt-out and
    the rest engagement events; ``offset`` keeps each run's addresses and ids apart. Keys are
    scattered (:mod:`keys`) and event times move forward through the load."""
    bodies, headers, optouts = [], [], 0
    timestamp = str(int(time.time()))
    first_timestamp = int(timestamp) - 3600
    for b in range(offset, offset + batches):
        events = []
        for i in range(BATCH):
            n = b * BATCH + i
            kind = (
                OPT_OUTS[n // optout_every % len(OPT_OUTS)]
                if n % optout_every == 0
                else ENGAGEMENT[n % len(ENGAGEMENT)]
            )
            optouts += n % optout_every == 0
            event = {
                "email": keys.address(n),
                "timestamp": first_timestamp + n // EVENTS_PER_SECOND,
                "event": kind,
                "sg_event_id": keys.event_id(n),
                "sg_message_id": f"14c5d75ce93.dfd.{n}.filter0001.16648.5515E0B88.0",
                "category": ["newsletter"],
            }
            if kind == "group_unsubscribe":
                event["asm_group_id"] = 1234
            if kind == "bounce":
                event |= {"type": "bounce", "reason": "550 5.1.1 The email account does not exist", "status": "5.1.1"}
            events.append(json.dumps(event, separators=(",", ":")))
        body = ("[" + ",\r\n".join(events) + "]\r\n").encode()
        signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        bodies.append(body)
        headers.append(
            {
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            }
        )
    return Load(bodies, headers, batches * BATCH, optouts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """One gunicorn on a free port, stopped with SIGTERM; its output goes to a log file."""

    def __init__(self, app: str, *, chdir: Path, env: dict[str, str], workers: int, threads: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "--chdir",
            str(chdir),
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "-b",
            f"127.0.0.1:{self.port}",
            "--timeout",
            "120",
            "--keep-alive",
            "30",
            app,
        ]
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"gunicorn exited ({self.proc.returncode}); see {self.log}:\n{self.log.read_text()[-2000:]}"
                )
            try:
                requests.get(self.url + path, timeout=10)
                return
            except requests.RequestException:  # not listening yet, or still importing the app
                time.sleep(0.1)
        raise SystemExit(f"gunicorn did not start; see {self.log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def post_all(url: str, load: Load, clients: int) -> tuple[float, dict[int, int]]:
    """Post every delivery from ``clients`` threads; answer wall time and status counts."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    next_index = iter(range(len(load.bodies)))

    def client() -> None:
        with requests.Session() as http:
            for i in next_index:
                try:
                    status = http.post(url, data=load.bodies[i], headers=load.headers[i], timeout=120).status_code
                except requests.RequestException:
                    status = 0
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, statuses


def count_rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def serve_and_post(
    app: str,
    *,
    chdir: Path,
    env: dict[str, str],
    ready: str,
    path: str,
    load: Load,
    args: argparse.Namespace,
    log: Path,
) -> tuple[float, dict[int, int]]:
    """Start ``app`` under gunicorn, post the whole load to ``path``, stop it."""
    server = Gunicorn(app, chdir=chdir, env=env, workers=args.workers, threads=args.threads, log=log)
    try:
        server.wait_ready(ready)
        return post_all(server.url + path, load, args.clients)
    finally:
        server.stop()


def on_hub_database(url: str, sql: str) -> int | None:
    """Run one statement on optout-hub's database; its first value, if it returns rows."""
    engine = database.make_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql))
            return result.scalar_one() if result.returns_rows else None
    finally:
        engine.dispose()


def run_hub(
    tmp: Path, name: str, load: Load, public_key: str, args: argparse.Namespace
) -> tuple[float, dict[int, int], int]:
    url = args.database_url or f"sqlite:///{tmp / f'{name}.db'}"
    config = tmp / f"{name}.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[logging]\nlevel = "WARNING"\n'
        '[providers.sendgrid]\nenabled = true\n[[topics]]\nname = "newsletter"\nsendgrid_group = 1234\n'
    )
    env = {
        "OPTOUT_HUB_CONFIG": str(config),
        "OPTOUT_HUB_SECRET": "bench-token-secret-0123456789",
        "SENDGRID_API_KEY": "SG.bench",
        "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
    }
    subprocess.run(
        [sys.executable, "-m", "adapters", "db", "upgrade"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if args.database_url:  # a PostgreSQL database is reused from run to run: empty it
        on_hub_database(url, f"TRUNCATE {', '.join(t.name for t in Base.metadata.sorted_tables)}")
    elapsed, statuses = serve_and_post(
        "webhooks:create_app()",
        chdir=ROOT,
        env=env,
        ready="/healthz",
        path="/webhooks/sendgrid",
        load=load,
        args=args,
        log=tmp / f"{name}.log",
    )
    return elapsed, statuses, on_hub_database(url, "SELECT count(*) FROM events") or 0


def run_anymail(tmp: Path, load: Load, public_key: str, args: argparse.Namespace) -> tuple[float, dict[int, int], int]:
    db = tmp / "anymail.db"
    env = {
        "DJANGO_SETTINGS_MODULE": "anymail_site.settings",
        "BENCH_DJANGO_DB": str(db),
        "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key,
        "PYTHONPATH": str(BENCH),
        "PYTHONWARNINGS": "ignore",
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v", "0"],
        cwd=BENCH,
        env={**os.environ, **env},
        check=True,
    )
    tracking = "/anymail/sendgrid/tracking/"
    elapsed, statuses = serve_and_post(
        "anymail_site.wsgi:application",
        chdir=BENCH,
        env=env,
        ready=tracking,
        path=tracking,
        load=load,
        args=args,
        log=tmp / "anymail.log",
    )
    return elapsed, statuses, count_rows(db, "receiver_trackedevent")


def run_sink(tmp: Path, load: Load, args: argparse.Namespace) -> tuple[float, dict[int, int]]:
    return serve_and_post(
        "sink:create_app()",
        chdir=BENCH,
        env={},
        ready="/",
        path="/webhooks/sendgrid",
        load=load,
        args=args,
        log=tmp / "sink.log",
    )


def line(
    name: str, sent: int, elapsed: float, statuses: dict[int, int], *, stored: int | None, counted: int, what: str
) -> str:
    """One result: ``counted`` events per second of wall time, described by ``what``."""
    answers = ", ".join(f"{n} x {s or 'error'}" for s, n in sorted(statuses.items()))
    kept = f"{stored:>7,} stored" if stored is not None else " " * 14
    return f"{name:<48} {sent:>7,} sent {kept} {elapsed:7.2f} s {counted / elapsed:>10,.0f} {what}   [{answers}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batches", type=int, default=60, help="1,000-event deliveries sent to optout-hub and the sink"
    )
    parser.add_argument(
        "--anymail-batches",
        type=int,
        default=6,
        help="deliveries sent to django-anymail (it stores one event at a time)",
    )
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for every server")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per gunicorn worker (more than 1: gthread workers)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="optout-hub runs of the worst case, each on a fresh database; the median is reported",
    )
    parser.add_argument(
        "--database-url",
        help="optout-hub's database instead of a fresh SQLite file per run (PostgreSQL: its tables are emptied before "
        "each run)",
    )
    args = parser.parse_args()

    key = ec.generate_private_key(ec.SECP256R1())
    public_key = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    hub_load = make_load(key, args.batches, 0)
    anymail_load = make_load(key, args.anymail_batches, args.batches)
    mix_load = make_load(key, args.batches, args.batches + args.anymail_batches, optout_every=MIX_EVERY)
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    try:
        load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"SendGrid webhook bench: signed {BATCH:,}-event deliveries, {args.clients} client threads, gunicorn "
            f"{args.workers} workers x {args.threads} threads each, optout-hub on "
            f"{'PostgreSQL' if args.database_url else 'SQLite'}, {os.cpu_count()} CPUs (load average {load_avg})",
            flush=True,
        )
        rounds = sorted(
            (run_hub(tmp, f"hub-{r}", hub_load, public_key, args) for r in range(args.rounds)),
            key=lambda run: run[2] / run[0],
        )
        hub_time, hub_status, hub_rows = rounds[len(rounds) // 2]
        spread = ", ".join(f"{rows / elapsed:,.0f}" for elapsed, _, rows in rounds)
        print(
            line(
                "optout-hub, all opt-outs (worst case)",
                hub_load.events,
                hub_time,
                hub_status,
                stored=hub_rows,
                counted=hub_rows,
                what=f"durable events/s (median of {args.rounds} rounds: {spread})",
            ),
            flush=True,
        )
        any_time, any_status, any_rows = run_anymail(tmp, anymail_load, public_key, args)
        print(
            line(
                "django-anymail tracking + get_or_create",
                anymail_load.events,
                any_time,
                any_status,
                stored=any_rows,
                counted=any_rows,
                what="durable events/s",
            ),
            flush=True,
        )
        sink_time, sink_status = run_sink(tmp, hub_load, args)
        print(
            line(
                "bare Flask sink (stores nothing)",
                hub_load.events,
                sink_time,
                sink_status,
                stored=None,
                counted=hub_load.events,
                what="events/s",
            ),
            flush=True,
        )
        mix_time, mix_status, mix_rows = run_hub(tmp, "hub-mix", mix_load, public_key, args)
        print(
            line(
                f"optout-hub, 1 opt-out in {MIX_EVERY} (typical traffic)",
                mix_load.events,
                mix_time,
                mix_status,
                stored=mix_rows,
                counted=mix_load.events,
                what=f"events/s handled ({mix_rows:,} of {mix_load.optouts:,} opt-outs stored)",
            ),
            flush=True,
        )
        ours, theirs, ceiling = (
            hub_rows / hub_time,
            any_rows / any_time if any_rows else 0.0,
            hub_load.events / sink_time,
        )
        ratio = f"{ours / theirs:,.1f}x" if theirs else "n/a (it stored nothing)"
        print(
            f"optout-hub: {ours:,.0f} durable events/s (target >= 30,000); {ratio} django-anymail (target >= 10x); "
            f"{ours / ceiling:.0%} of the bare sink's rate"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
