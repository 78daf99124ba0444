"""Reconciliation: pulled records per second and calls per 1,000 records, per provider, for a
backfill (``reconcile --full``) into a fresh store, beside the bare pull in the same run (the
same pages fetched and parsed from the same fakes, nothing stored).

    python bench/reconcile.py [--records 20000] [--database-url URL]

Each provider's fake (``tests/support/fake_providers.py``: real HTTP servers on 127.0.0.1 that
check every call) holds ``--records`` suppressions made "in its UI" (HubSpot a tenth: its search
is limited to five calls a second).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from adapters.config import parse_config
from adapters.hub import Hub
from adapters.providers import make_pullers
from adapters.worker.reconcile import pull_provider
from tests.support.fake_providers import FakeProviders, provider_env_vars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    fakes = FakeProviders.start()
    past = int(time.time()) - 86_400
    n = args.records
    fakes.mailchimp.ui_set("list1", [f"mc{i}@example.com" for i in range(n)], "unsubscribed", at=past)
    fakes.sendgrid.ui_add("unsubscribes", [f"sg{i}@example.com" for i in range(n)], created=past)
    fakes.hubspot.ui_status([f"hs{i}@example.com" for i in range(n // 10)], at=past)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        data = {
            "database": {"url": url},
            "providers": {
                "mailchimp": {
                    "enabled": True,
                    "base_url": fakes.mailchimp.url,
                    "lists": ["list1"],
                    "webhook_secret_env": "",
                },
                "sendgrid": {"enabled": True, "base_url": fakes.sendgrid.url, "webhook_public_key_env": ""},
                "hubspot": {"enabled": True, "base_url": fakes.hubspot.url, "client_secret_env": ""},
            },
        }
        hub = Hub.open(parse_config(data, provider_env_vars()), upgrade=True)
        print(f"{'provider':<10} {'records':>8} {'bare pull rec/s':>16} {'reconcile rec/s':>16} {'calls/1,000':>12}")
        with requests.Session() as http:
            pullers = make_pullers(hub.config, http, now=hub.clock)
            for slug, puller in pullers.items():
                started = time.perf_counter()
                bare = sum(len(page.events) for page in puller.pull(since=None, checkpoint=None))
                bare_rate = bare / (time.perf_counter() - started)
                started = time.perf_counter()
                tally = pull_provider(hub, puller, full=True, since=None)
                rate = tally.pulled / (time.perf_counter() - started)
                per_1000 = tally.calls * 1000 / max(tally.pulled, 1)
                print(f"{slug:<10} {tally.pulled:>8,} {bare_rate:>16,.0f} {rate:>16,.0f} {per_1000:>12.1f}")
        hub.close()
    fakes.close()


if __name__ == "__main__":
    main()
