"""Push-back: provider calls per 1,000 opt-outs and latency from receipt to the provider's 2xx,
for optout-hub's batching worker beside a naive one-call-per-opt-out-per-provider worker
(batch size 1, no collection window) measured in the same run.

    python bench/push.py [--database-url URL] [--burst 10000] [--baseline-burst 1000]
                         [--rate 1000] [--seconds 60] [--provider-latency 0.05] [--per-address 1000]

- burst: records N global opt-outs at once (source ``api``, so each goes to Mailchimp with one
  list, SendGrid and HubSpot), then drains the outbox; counts the calls the fake providers
  answered. The naive baseline drains a smaller burst (30,000 calls take minutes) and is
  scaled to 1,000.
- steady: records opt-outs one by one at ``--rate`` per minute for ``--seconds`` while the
  worker runs as in ``serve``; latency is from the moment an opt-out was recorded to the fake's
  2xx for the call that carried it, per (opt-out, provider).
- per-address: N HubSpot topic opt-outs (one v3 call per address) pushed by two workers with a
  1 s lease that a claim outlasts; the calls per address must be 1. Each worker sends up to 10
  calls at once and at most 125 per 10 s (HubSpot's highest burst limit, 250, shared), so the drain time is
  set by that limit; the line shows the most calls the fake saw in any 10 s and at once.

The providers are the test suite's fakes (``tests/support/fake_providers.py``): real HTTP
servers on 127.0.0.1 that check every call; ``--provider-latency`` adds a fixed delay to each
answer, as a real API over the internet would (the burst runs without it, to count calls and
time our own work).
Each mode gets a fresh database: an SQLite file in a temporary directory by default.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from sqlalchemy import text

from adapters.config import parse_config
from adapters.events import Kind, OptOutEvent, Source, topic_scope
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.outbox import outbox_summary
from adapters.worker.outbox import Worker
from tests.support.fake_providers import FakeHubSpot, FakeMailchimp, FakeProviders, FakeSendGrid, provider_env_vars

SLUGS = ("mailchimp", "sendgrid", "hubspot")


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    batched: bool


MODES = (Mode("optout-hub (batched)", True), Mode("naive (1 call each)", False))


@contextmanager
def setup(
    mode: Mode,
    database_url: str | None,
    *,
    extra: dict[str, Any] | None = None,
    hubspot: dict[str, Any] | None = None,
) -> Iterator[tuple[Hub, FakeProviders, Worker]]:
    """A fresh database, fresh fakes, and a worker configured for ``mode`` (``extra``: more
    config, merged into the top-level tables; ``hubspot``: more keys for its table)."""
    fakes = FakeProviders(FakeMailchimp(lists=("list1",)), FakeSendGrid(), FakeHubSpot())
    with tempfile.TemporaryDirectory() as tmp:
        worker_cfg = (
            {"collect_window_seconds": 0.2, "poll_interval_seconds": 0.5}
            if mode.batched
            else {"collect_window_seconds": 0.0, "poll_interval_seconds": 0.5}
        )
        providers = {
            "mailchimp": {
                "enabled": True,
                "lists": ["list1"],
                "webhook_secret_env": "",
                "base_url": fakes.url("mailchimp"),
            },
            "sendgrid": {"enabled": True, "webhook_public_key_env": "", "base_url": fakes.url("sendgrid")},
            "hubspot": {"enabled": True, "client_secret_env": "", "base_url": fakes.url("hubspot"), **(hubspot or {})},
        }
        if not mode.batched:
            for table in providers.values():
                table["batch_size"] = 1
        data = {
            "database": {"url": database_url or f"sqlite:///{tmp}/push-bench.db"},
            "worker": worker_cfg,
            "providers": providers,
        }
        for table, values in (extra or {}).items():
            data[table] = {**data.get(table, {}), **values} if isinstance(values, dict) else values
        config = parse_config(data, {"OPTOUT_HUB_SECRET": "bench-secret-0123456789abcdef", **provider_env_vars()})
        hub = Hub.open(config, upgrade=True)
        if hub.engine.dialect.name == "postgresql":
            with hub.engine.begin() as conn:
                conn.execute(text("TRUNCATE events, suppressions, outbox, evidence, pending_lookups CASCADE"))
        http = requests.Session()
        try:
            yield hub, fakes, Worker(hub, make_clients(config, http, now=hub.clock), http=http)
        finally:
            http.close()
            hub.close()
            fakes.close()


def optouts(prefix: str, n: int) -> list[OptOutEvent]:
    return [OptOutEvent(email=f"{prefix}{i}@example.com", kind=Kind.UNSUBSCRIBE, source=Source.API) for i in range(n)]


def pending(hub: Hub) -> int:
    with hub.sessions() as session:
        return sum(c["pending"] for c in outbox_summary(session).values())


def burst(mode: Mode, n: int, database_url: str | None) -> tuple[dict[str, int], float]:
    with setup(mode, database_url) as (hub, fakes, worker):
        events = optouts("burst", n)
        for start in range(0, n, 1000):
            hub.record(events[start : start + 1000])
        started = time.perf_counter()
        worker.drain()
        elapsed = time.perf_counter() - started
        assert pending(hub) == 0 and not fakes.unexpected(), fakes.unexpected()[:3]
        return {slug: len(fakes[slug].calls) for slug in SLUGS}, elapsed


def carried(slug: str, body: dict) -> list[str]:
    """The addresses one push call carried."""
    if slug == "mailchimp":
        return [m["email_address"] for m in body["members"]]
    return body["recipient_emails"] if slug == "sendgrid" else body["inputs"]


def steady(
    mode: Mode, rate: int, seconds: float, provider_latency: float, database_url: str | None
) -> tuple[list[float], int, int]:
    """Latencies (s), calls, and opt-outs of a steady stream at ``rate`` per minute."""
    with setup(mode, database_url) as (hub, fakes, worker):
        for fake in fakes.all():
            fake.latency = provider_latency
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        recorded: dict[str, float] = {}
        n = int(rate * seconds / 60)
        interval = 60 / rate
        start = time.time()
        for i, event in enumerate(optouts("steady", n)):
            time.sleep(max(start + i * interval - time.time(), 0))
            recorded[event.email] = time.time()
            hub.record([event])
        deadline = time.time() + 600
        while pending(hub) and time.time() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(timeout=60)
        left = pending(hub)
        latencies = []
        for slug in SLUGS:
            seen: set[str] = set()
            for call in fakes[slug].calls:
                if 200 <= call.status < 300 and call.method == "POST":
                    for address in carried(slug, call.body):
                        if address not in seen:
                            seen.add(address)
                            latencies.append(call.at - recorded[address])
        assert not left and not fakes.unexpected(), (left, fakes.unexpected()[:3])
        return latencies, fakes.calls(), n


def per_address(n: int, latency: float, database_url: str | None) -> tuple[float, float, int, int]:
    """HubSpot calls per address, seconds, the most calls in any 10 s and the most at once, for
    ``n`` topic opt-outs (one v3 call each) pushed by two workers whose claims outlast a 1 s
    lease."""
    extra = {
        "worker": {"lease_seconds": 1, "collect_window_seconds": 0.0, "poll_interval_seconds": 0.05},
        "topics": [{"name": "news", "hubspot_subscription": "5678"}],
    }
    limits = {"max_concurrent_requests": 10, "requests_per_10_seconds": 125}  # HubSpot's top 250 / 10 s, shared by two
    with setup(MODES[0], database_url, extra=extra, hubspot=limits) as (hub, fakes, _):
        fakes.hubspot.latency = latency
        sessions = [requests.Session() for _ in range(2)]
        clients = [make_clients(hub.config, http, now=hub.clock) for http in sessions]
        workers = [Worker(hub, {"hubspot": c["hubspot"]}, http=http) for c, http in zip(clients, sessions, strict=True)]
        events = [dataclasses.replace(e, scope=topic_scope("news")) for e in optouts("topic", n)]
        hub.record(events)
        stop = threading.Event()
        started = time.perf_counter()
        threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
        for thread in threads:
            thread.start()
        while pending(hub):
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        for http in sessions:
            http.close()
        answered = fakes.hubspot.calls_to("POST", "/communication-preferences/v3/")
        assert not fakes.unexpected(), fakes.unexpected()[:3]
        times = sorted(c.at for c in answered)
        in_window = max((bisect.bisect_right(times, t + 10) - i for i, t in enumerate(times)), default=0)
        return len(answered) / n, elapsed, in_window, fakes.hubspot.max_in_flight


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file per mode")
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--baseline-burst", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=1_000, help="opt-outs per minute in the steady phase")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--per-address", type=int, default=1_000, help="HubSpot topic opt-outs, two workers")
    parser.add_argument(
        "--provider-latency", type=float, default=0.05, help="seconds each fake answer is delayed in the steady phase"
    )
    args = parser.parse_args()

    print(
        f"push bench: {args.database_url or 'SQLite file'}; fake providers on 127.0.0.1 (Mailchimp with 1 list, "
        "SendGrid, HubSpot)"
    )
    print(
        f"\nburst: global opt-outs recorded at once, then drained (optout-hub: {args.burst:,}; naive: "
        f"{args.baseline_burst:,}, scaled)"
    )
    print(
        f"  {'mode':<22} {'calls/1,000':>11} {'mailchimp':>10} {'sendgrid':>9} {'hubspot':>8} {'drain s':>8} "
        f"{'opt-outs/s':>11}"
    )
    for mode in MODES:
        n = args.burst if mode.batched else args.baseline_burst
        calls, elapsed = burst(mode, n, args.database_url)
        per = {slug: calls[slug] * 1000 / n for slug in SLUGS}
        print(
            f"  {mode.name:<22} {sum(per.values()):>11.1f} {per['mailchimp']:>10.1f} {per['sendgrid']:>9.1f} "
            f"{per['hubspot']:>8.1f} {elapsed:>8.2f} {n / elapsed:>11,.0f}"
        )

    print(
        f"\nsteady: {args.rate:,} opt-outs/min for {args.seconds:g} s, each provider answering after "
        f"{args.provider_latency * 1000:g} ms"
    )
    print(f"  {'mode':<22} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'calls/1,000':>11}")
    for mode in MODES:
        latencies, calls, n = steady(mode, args.rate, args.seconds, args.provider_latency, args.database_url)
        print(
            f"  {mode.name:<22} {percentile(latencies, 50):>7.3f} {percentile(latencies, 99):>7.3f} "
            f"{max(latencies):>7.3f} {calls * 1000 / n:>11.1f}"
        )
    print(
        f"\nper-address: {args.per_address:,} HubSpot topic opt-outs (one v3 call each), two workers, 1 s lease, "
        "each worker <= 10 calls at once and <= 125 per 10 s"
    )
    per, elapsed, in_window, at_once = per_address(args.per_address, 0.005, args.database_url)
    print(
        f"  calls per address {per:.2f}, drained in {elapsed:.1f} s; at most {in_window} calls in 10 s, "
        f"{at_once} at once"
    )
    print(
        "\ntargets: <= 15 calls per 1,000 opt-outs across the three providers (burst); "
        "p99 <= 2 s at 1,000 opt-outs/min; 1 call per address (per-address)"
    )


if __name__ == "__main__":
    main()
