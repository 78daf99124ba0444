"""Cases every provider webhook must pass, over real HTTP to the running app.

A provider's test module subclasses :class:`WebhookCases` and supplies how to build a
delivery for it (body, headers, path) and what it stores; the cases here then check the
contract's promises for every provider alike: a valid delivery is durable before the 2xx, a
replay is stored once, a tampered, unsigned or malformed delivery stores nothing, a database
failure is a 5xx, and every request is counted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest
import requests
from sqlalchemy import func, select, text

from adapters.config import Config
from adapters.hub import Hub
from adapters.store.models import Event, Evidence
from tests.support.servers import LiveServer


@dataclasses.dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str]
    path: str

    def replace(self, **changes: Any) -> Delivery:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class Running:
    hub: Hub
    server: LiveServer

    def post(self, delivery: Delivery) -> requests.Response:
        return requests.post(self.server.url + delivery.path, data=delivery.body, headers=delivery.headers, timeout=10)

    def count(self, model: type) -> int:
        with self.hub.sessions() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0

    def requests_counted(self, provider: str, status: int) -> float:
        return self.hub.metrics.webhook_requests.labels(provider, str(status))._value.get()


class WebhookCases:
    """Subclass as ``Test<Provider>Webhook`` and fill in the hooks below."""

    provider: ClassVar[str]
    bad_signature_status: ClassVar[int]
    # ``Event`` for providers whose events name an address; ``PendingLookup`` for HubSpot.
    stored_model: ClassVar[type] = Event

    def config_data(self, fake_url: str) -> dict[str, Any]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def optouts(self, emails: Sequence[str]) -> list[Delivery]:
        """Valid, signed deliveries with one global opt-out per address (one delivery for
        providers that batch, one per address for those that do not)."""
        raise NotImplementedError

    def unsigned(self, delivery: Delivery) -> Delivery:
        """The same delivery without its proof of origin."""
        raise NotImplementedError

    def malformed(self) -> list[Delivery]:
        """Correctly signed deliveries whose bodies are not acceptable."""
        raise NotImplementedError

    def secrets(self, delivery: Delivery) -> list[str]:
        """What must never reach a log line: configured secrets and the delivery's proof."""
        return [v for v in self.env().values() if len(v) >= 12] + [
            v for k, v in delivery.headers.items() if "signature" in k.lower()
        ]

    def tampered(self, delivery: Delivery) -> Delivery:
        """One byte of the body changed after signing."""
        i = delivery.body.index(b"@")
        return delivery.replace(body=delivery.body[: i - 1] + b"x" + delivery.body[i:])

    @pytest.fixture
    def start(
        self,
        make_config: Callable[..., Config],
        make_hub: Callable[[Config], Hub],
        serve_app: Callable[[Any], LiveServer],
    ) -> Callable[..., Running]:
        from webhooks import create_app

        def start(data: dict[str, Any] | None = None) -> Running:
            hub = make_hub(
                make_config(data if data is not None else self.config_data("http://127.0.0.1:9"), env=self.env())
            )
            return Running(hub, serve_app(create_app(hub=hub)))

        return start

    @pytest.fixture
    def running(self, start: Callable[..., Running]) -> Running:
        return start()

    def test_valid_delivery_is_stored_with_its_evidence(self, running: Running) -> None:
        deliveries = self.optouts(["ann@example.com", "bob@example.com"])
        for delivery in deliveries:
            r = running.post(delivery)
            assert r.status_code == 200, r.text
        assert running.count(self.stored_model) == 2
        with running.hub.sessions() as session:
            evidence = session.scalars(select(Evidence).order_by(Evidence.id)).all()
        assert [(e.channel, e.source, e.content) for e in evidence] == [
            ("webhook", self.provider, d.body) for d in deliveries
        ]
        kept = " ".join(f"{k}={v}" for e in evidence for k, v in e.meta.items()).lower()
        assert "signature" not in kept and "secret" not in kept
        assert running.requests_counted(self.provider, 200) == len(deliveries)
        metrics = requests.get(running.server.url + "/metrics", timeout=5).text
        assert (
            f'optout_webhook_requests_total{{provider="{self.provider}",status="200"}} {len(deliveries)}.0' in metrics
        )

    def test_replayed_delivery_is_stored_once(self, running: Running) -> None:
        [delivery] = self.optouts(["ann@example.com"])
        for _ in range(3):
            assert running.post(delivery).status_code == 200
        assert running.count(self.stored_model) == 1

    def test_tampered_body_is_refused_and_nothing_stored(self, running: Running) -> None:
        r = running.post(self.tampered(self.optouts(["ann@example.com"])[0]))
        assert r.status_code == self.bad_signature_status
        assert "error" in r.json()
        assert running.count(Evidence) == running.count(self.stored_model) == 0
        assert running.requests_counted(self.provider, self.bad_signature_status) == 1

    def test_missing_proof_is_refused_and_nothing_stored(self, running: Running) -> None:
        r = running.post(self.unsigned(self.optouts(["ann@example.com"])[0]))
        assert r.status_code == self.bad_signature_status
        assert running.count(Evidence) == 0

    def test_malformed_bodies_are_400_json_and_nothing_stored(self, running: Running) -> None:
        for delivery in self.malformed():
            r = running.post(delivery)
            assert r.status_code == 400, (delivery.body, r.text)
            assert r.headers["Content-Type"] == "application/json" and r.json()["error"]
        assert running.count(Evidence) == running.count(self.stored_model) == 0

    def test_no_secret_or_signature_is_logged(self, running: Running, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        [delivery] = self.optouts(["ann@example.com"])
        for attempt in (delivery, self.tampered(delivery), self.unsigned(delivery), *self.malformed()):
            running.post(attempt)
        server_log = "\n".join(
            r.getMessage() for r in caplog.records if not r.name.startswith("urllib3")
        )  # urllib3: the test's client
        assert "webhook" in server_log
        for secret in self.secrets(delivery):
            assert secret not in server_log

    def test_database_failure_is_503_and_the_retry_succeeds(self, running: Running) -> None:
        with running.hub.engine.begin() as conn:
            conn.execute(text("ALTER TABLE evidence RENAME TO evidence_away"))
        [delivery] = self.optouts(["ann@example.com"])
        r = running.post(delivery)
        assert r.status_code == 503 and "retry" in r.json()["error"]
        with running.hub.engine.begin() as conn:
            conn.execute(text("ALTER TABLE evidence_away RENAME TO evidence"))
        assert running.count(self.stored_model) == 0
        assert running.post(delivery).status_code == 200
        assert running.count(self.stored_model) == 1

    def test_body_over_the_limit_is_413(self, start: Callable[..., Running]) -> None:
        data = self.config_data("http://127.0.0.1:9")
        running = start({**data, "http": {"max_content_length": 64}})
        r = running.post(self.optouts(["a-rather-long-address-to-pass-the-limit@example.com"])[0])
        assert r.status_code == 413 and r.json()["error"]
        assert running.count(Evidence) == 0

    def test_disabled_provider_is_404(self, start: Callable[..., Running]) -> None:
        running = start({})
        r = running.post(self.optouts(["ann@example.com"])[0])
        assert r.status_code == 404
        assert running.count(Evidence) == 0
