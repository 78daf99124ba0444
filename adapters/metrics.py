"""Prometheus metrics, one registry per process, passed in like the config (served at ``/metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("optout_events", "Opt-out events stored", ["source", "kind"], registry=r)
        self.smtp_messages = Counter(
            "optout_smtp_messages", "Inbound messages by classification", ["classification"], registry=r
        )
        self.webhook_requests = Counter(
            "optout_webhook_requests", "Webhook requests by provider and status", ["provider", "status"], registry=r
        )
        self.push = Counter("optout_push", "Outbox pushes by provider and result", ["provider", "result"], registry=r)
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
        self.registry.register(
            _ProviderGauge("optout_outbox_pending", "Outbox rows not yet pushed, per provider", outbox)
        )
        self.registry.register(
            _ProviderGauge(
                "optout_lookups_pending", "Provider events waiting for their contact's address, per provider", lookups
            )
        )
        self.registry.register(
            _ProviderGauge(
                "optout_oldest_unsettled_seconds",
                "Age of the oldest opt-out not yet confirmed by the provider (pending or dead), per provider",
                unsettled,
            )
        )

    def watch_inbound(self, oldest_pending_age: Callable[[], float | None]) -> None:
        """``optout_inbound_oldest_pending_seconds``: how long the oldest message answered
        ``250`` has waited for its classification."""
        self.registry.register(
            _StoreGauge(
                "optout_inbound_oldest_pending_seconds",
                "Age of the oldest stored but unclassified inbound message (0: none)",
                oldest_pending_age,
            )
        )

    def watch_budget(self, remaining: Callable[[], Iterable[tuple[str, float]]]) -> None:
        """``optout_provider_budget_remaining{provider}``: calls a provider with a daily limit
        (Constant Contact) still allows today."""
        self.registry.register(
            _ProviderGauge(
                "optout_provider_budget_remaining", "API calls left today, per provider with a daily limit", remaining
            )
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
