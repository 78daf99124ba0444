"""Prometheus metrics, one registry per process, passed in like the config (served at ``/metrics``).

Under gunicorn every worker is a process of its own: ``webhooks.gunicorn_conf`` points
prometheus-client's multiprocess mode at a directory (``PROMETHEUS_MULTIPROC_DIR``) before any
worker starts, each worker's counters then live in files there, and a scrape of any worker sums
them all, so one scrape is coherent (README "Logs and metrics"). The gauges read from the store
need no such help: every process reads the same database.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector


class _ProviderGauge(Collector):
    """A gauge per provider, read from the store at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], Iterable[tuple[str, float]]]) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=["provider"])
        for provider, count in self._read():
            family.add_metric([provider], count)
        yield family


class _LimitGauge(Collector):
    """A gauge per limit (``2d``, ``10bd``), read from the store at scrape time; no sample
    while the store cannot answer."""

    def __init__(self, name: str, documentation: str, read: Callable[[], dict[str, int] | None]) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=["limit"])
        for limit, count in (self._read() or {}).items():
            family.add_metric([limit], count)
        yield family


class _StoreGauge(Collector):
    """One gauge read from the store at scrape time; no sample while the store cannot answer."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float | None]) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation)
        value = self._read()
        if value is not None:
            family.add_metric([], value)
        yield family


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._store_gauges: list[Collector] = []
        r = self.registry
        self.events = Counter("optout_events", "Opt-out events stored", ["source", "kind"], registry=r)
        self.smtp_messages = Counter(
            "optout_smtp_messages", "Inbound messages by classification", ["classification"], registry=r
        )
        self.webhook_requests = Counter(
            "optout_webhook_requests", "Webhook requests by provider and status", ["provider", "status"], registry=r
        )
        self.push = Counter("optout_push", "Outbox pushes by provider and result", ["provider", "result"], registry=r)
        self.deliveries = Counter(
            "optout_subscriber_deliveries", "Outbound webhook attempts by result", ["result"], registry=r
        )
        self.push_latency = Histogram(
            "optout_push_latency_seconds",
            "From receipt of a request to the provider's 2xx",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
            registry=r,
        )

    def watch_backlog(
        self,
        outbox: Callable[[], Iterable[tuple[str, float]]],
        lookups: Callable[[], Iterable[tuple[str, float]]],
        unsettled: Callable[[], Iterable[tuple[str, float]]],
    ) -> None:
        """``optout_outbox_pending{provider}``, ``optout_lookups_pending{provider}`` and
        ``optout_oldest_unsettled_seconds{provider}`` (the age of the oldest opt-out a
        provider has not confirmed; 0 when it has confirmed them all)."""
        self._watch(_ProviderGauge("optout_outbox_pending", "Outbox rows not yet pushed, per provider", outbox))
        self._watch(
            _ProviderGauge(
                "optout_lookups_pending", "Provider events waiting for their contact's address, per provider", lookups
            )
        )
        self._watch(
            _ProviderGauge(
                "optout_oldest_unsettled_seconds",
                "Age of the oldest opt-out not yet confirmed by the provider (pending or dead), per provider",
                unsettled,
            )
        )

    def watch_outbox(
        self, dead: Callable[[], Iterable[tuple[str, float]]], oldest_pending: Callable[[], Iterable[tuple[str, float]]]
    ) -> None:
        """``optout_outbox_dead{provider}`` (rows no retry can fix, waiting for an admin) and
        ``optout_outbox_oldest_pending_seconds{provider}`` (how long the oldest row not yet
        pushed has waited since it was queued; 0 when none)."""
        self._watch(_ProviderGauge("optout_outbox_dead", "Outbox rows gone dead, per provider", dead))
        self._watch(
            _ProviderGauge(
                "optout_outbox_oldest_pending_seconds",
                "Age of the oldest outbox row not yet pushed, per provider (0: none)",
                oldest_pending,
            )
        )

    def watch_inbound(self, oldest_pending_age: Callable[[], float | None]) -> None:
        """``optout_inbound_oldest_pending_seconds``: how long the oldest message answered
        ``250`` has waited for its classification."""
        self._watch(
            _StoreGauge(
                "optout_inbound_oldest_pending_seconds",
                "Age of the oldest stored but unclassified inbound message (0: none)",
                oldest_pending_age,
            )
        )

    def _watch(self, gauge: Collector) -> None:
        self.registry.register(gauge)
        self._store_gauges.append(gauge)

    def scrape_registry(self) -> CollectorRegistry:
        """What a scrape reads: this process's registry, or under gunicorn's multiprocess mode
        the sum of every worker's counters plus the store's gauges."""
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return self.registry
        registry = CollectorRegistry()
        collector: Callable[..., object] = MultiProcessCollector  # untyped in prometheus-client
        collector(registry, path=directory)
        for gauge in self._store_gauges:
            registry.register(gauge)
        return registry

    def watch_overdue(self, overdue: Callable[[], dict[str, int] | None]) -> None:
        """``optout_requests_overdue{limit="2d"|"10bd"}``: opt-outs some provider has not
        confirmed that are past that limit (README "Compliance")."""
        self._watch(
            _LimitGauge(
                "optout_requests_overdue", "Opt-outs not yet confirmed by every provider, past the limit", overdue
            )
        )

    def watch_budget(self, remaining: Callable[[], Iterable[tuple[str, float]]]) -> None:
        """``optout_provider_budget_remaining{provider}``: calls a provider with a daily limit
        (Constant Contact) still allows today."""
        self._watch(
            _ProviderGauge(
                "optout_provider_budget_remaining", "API calls left today, per provider with a daily limit", remaining
            )
        )

    def render(self) -> bytes:
        return generate_latest(self.scrape_registry())

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` from a thread, for a process without the HTTP
        app (``optout-hub smtp`` or ``worker`` run alone)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
