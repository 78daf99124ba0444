"""Recipients' pages and the admin dashboard: requests/s and latency of optout-hub's pages,
beside ``GET /healthz`` (one trivial database query: the floor for any page) measured in the
same run, on the same server and database.

    python bench/pages.py [--requests 2000] [--clients 8] [--events 100000] [--database-url URL]

- ``POST /u/<token>``: RFC 8058 one-click opt-outs, each for a different recipient, each
  durable (evidence + event + suppression + outbox rows committed) before its 200;
- ``GET /u/<token>`` and ``GET /preferences/<token>``: what link scanners and people fetch;
- ``GET /admin``: the dashboard, once on an empty store and once with ``--events`` opt-outs
  recorded over 30 days (counts, the chart's group-by, rates, the outbox summary).

The app runs in-process under waitress (as ``optout-hub serve`` runs it) with ``--clients``
threads; clients are ``requests`` sessions in as many threads. SQLite file by default.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from adapters.config import parse_config
from adapters.events import Kind, OptOutEvent, Source, utcnow
from adapters.hub import Hub
from adapters.store.recipients import RecipientRequest, issue_tokens
from webhooks import create_app
from webhooks.serving import BackgroundServer

SECRET, ADMIN = "bench-token-secret-0123456789abcdef", "bench-admin-token-0123456789"
SOURCES = [Source.SMTP, Source.ONECLICK, Source.PREFERENCES, Source.API]


def run(label: str, urls: list[str], clients: int, method: str = "GET", **kwargs: object) -> None:
    local = threading.local()

    def one(url: str) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        r = session.request(method, url, timeout=60, **kwargs)
        took = time.perf_counter() - start
        if r.status_code != 200:
            raise SystemExit(f"{label}: {url} answered {r.status_code}")
        return took

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        times = sorted(pool.map(one, urls))
    wall = time.perf_counter() - start
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    print(
        f"  {label:<44} {len(urls) / wall:>8,.0f} req/s   p50 {statistics.median(times) * 1000:>7.1f} ms   p95 "
        f"{p95 * 1000:>7.1f} ms   (n={len(urls):,})",
        flush=True,
    )


def admin_session(url: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{url}/admin/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    browser.post(f"{url}/admin/login", data={"token": ADMIN, "csrf_token": csrf}, timeout=10)
    return browser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        data = {
            "database": {"url": url},
            "security": {"token_secret_env": "OPTOUT_HUB_SECRET", "admin_token_env": "OPTOUT_HUB_ADMIN_TOKEN"},
            "http": {"public_url": "http://127.0.0.1"},
            "topics": [{"name": "news", "title": "News"}],
        }
        hub = Hub.open(parse_config(data, {"OPTOUT_HUB_SECRET": SECRET, "OPTOUT_HUB_ADMIN_TOKEN": ADMIN}), upgrade=True)
        server = BackgroundServer(create_app(hub=hub), host="127.0.0.1", port=0, threads=args.clients, ident="bench")
        server.start()
        base = server.url
        n = args.requests
        with hub.sessions.begin() as session:
            reqs = [
                RecipientRequest(f"person{i}@example.com", "news" if i % 2 else None, f"c{i % 20}") for i in range(n)
            ]
            tokens = [h.token for h in issue_tokens(session, hub.signer, hub.config, reqs, now=utcnow())]
        print(
            f"Pages bench: {n:,} requests per line, {args.clients} client threads, waitress {args.clients} threads, "
            f"{hub.engine.dialect.name}",
            flush=True,
        )
        run("baseline  GET /healthz", [f"{base}/healthz"] * n, args.clients)
        run("GET /u/<token>  (confirm page)", [f"{base}/u/{t}" for t in tokens], args.clients)
        run("GET /preferences/<token>", [f"{base}/preferences/{t}" for t in tokens], args.clients)
        run(
            "POST /u/<token>  (durable one-click opt-out)",
            [f"{base}/u/{t}" for t in tokens],
            args.clients,
            "POST",
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        admin = admin_session(base)
        dashboard_runs = max(20, n // 100)
        start = time.perf_counter()
        for _ in range(dashboard_runs):
            assert 'id="daily-chart"' in admin.get(f"{base}/admin", timeout=60).text
        small = (time.perf_counter() - start) / dashboard_runs
        now = utcnow()
        batch = []
        for i in range(args.events):
            at = now - timedelta(minutes=(i * 43) % (30 * 24 * 60))
            batch.append(
                OptOutEvent(
                    email=f"old{i}@example.com",
                    kind=Kind.UNSUBSCRIBE,
                    source=SOURCES[i % 4],
                    occurred_at=at,
                    received_at=at,
                    reason=f"reason {i % 7}",
                )
            )
            if len(batch) == 5000:
                hub.record(batch)
                batch = []
        hub.record(batch)
        start = time.perf_counter()
        for _ in range(dashboard_runs):
            assert 'id="daily-chart"' in admin.get(f"{base}/admin", timeout=60).text
        large = (time.perf_counter() - start) / dashboard_runs
        print(
            f"  {'GET /admin  (dashboard), ' + format(n, ',') + ' events':<44} {small * 1000:>8.1f} ms per page",
            flush=True,
        )
        print(
            f"  {'GET /admin  (dashboard), ' + format(n + args.events, ',') + ' events':<44} "
            f"{large * 1000:>8.1f} ms per page",
            flush=True,
        )
        server.stop()
        hub.close()


if __name__ == "__main__":
    main()
