"""Stateful property test: whatever order opt-outs, resubscribes, provider failures and worker
rounds come in, every fake provider ends holding the hub's state, and the hub the state of
the last event (the reference model) — through the real store, worker and HTTP fakes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from adapters.config import Config
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.models import Suppression
from adapters.store.outbox import outbox_summary
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders

TOPIC = topic_scope("newsletter")
SCOPES = (GLOBAL_SCOPE, TOPIC)


def test_every_provider_converges_to_the_hubs_state(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    config = make_push_config(fake_providers, providers=("sendgrid", "hubspot"), worker={"backoff_max_seconds": 60.0})
    sendgrid_cfg = replace(config.providers.sendgrid, timeout_seconds=0.2)
    hub = make_hub(replace(config, providers=replace(config.providers, sendgrid=sendgrid_cfg)))
    http = requests.Session()
    worker = Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http, rng=lambda: 1.0)
    examples = itertools.count()
    sendgrid, hubspot = fake_providers.sendgrid, fake_providers.hubspot

    class Convergence(RuleBasedStateMachine):
        """One example: a fresh address, a model of what the hub should hold per (address, scope)."""

        def __init__(self) -> None:
            super().__init__()
            self.address = f"p@e{next(examples)}.example.com"  # one address: its events interleave the most
            self.model: dict[str, bool] = {}  # scope -> suppressed

        def record(self, scope: str, kind: Kind, push: bool) -> None:
            """Record an event; with ``push``, a worker round follows at once, as in ``serve``."""
            clock.advance(1)
            if kind is Kind.RESUBSCRIBE:
                event = OptOutEvent(self.address, kind, Source.PREFERENCES, scope, verification=Verification.TOKEN)
            else:
                event = OptOutEvent(self.address, kind, Source.API, scope)
            hub.record([event])
            if push:
                worker.push_due()

        @rule(scope=st.sampled_from(SCOPES), push=st.booleans())
        def opt_out(self, scope: str, push: bool) -> None:
            self.record(scope, Kind.UNSUBSCRIBE, push)
            self.model[scope] = True

        @rule(scope=st.sampled_from(SCOPES), push=st.booleans())
        def resubscribe(self, scope: str, push: bool) -> None:
            self.record(scope, Kind.RESUBSCRIBE, push)
            if scope in self.model:
                self.model[scope] = False

        @rule(failure=st.sampled_from(["500", "429", "timeout"]), times=st.integers(1, 3))
        def sendgrid_fails(self, failure: str, times: int) -> None:
            if failure == "timeout":
                sendgrid.fail_next(201, timeout=0.3)
            elif failure == "429":
                sendgrid.fail_next(429, times=times, retry_after="5")
            else:
                sendgrid.fail_next(500, times=times)

        @rule(times=st.integers(1, 3))
        def hubspot_fails(self, times: int) -> None:
            hubspot.fail_next(503, times=times)

        @rule()
        def worker_round(self) -> None:
            worker.push_due()

        @rule(seconds=st.sampled_from([1, 5, 30, 120]))
        def time_passes(self, seconds: int) -> None:
            clock.advance(seconds)

        @invariant()
        def hub_holds_the_last_event(self) -> None:
            with hub.sessions() as session:
                for scope, suppressed in self.model.items():
                    assert session.get(Suppression, (self.address, scope)).suppressed is suppressed

        def teardown(self) -> None:
            for _ in range(20):  # the final drain: everything pushed, retries included
                clock.advance(3600)
                worker.drain()
                with hub.sessions() as session:
                    waiting = sum(c["pending"] for c in outbox_summary(session).values())
                if not waiting:
                    break
            assert not waiting, "the outbox did not drain"
            sendgrid.forget_failures()  # the next example starts without them
            hubspot.forget_failures()
            address = self.address
            for scope, suppressed in self.model.items():
                held = sendgrid.global_suppressions if scope == GLOBAL_SCOPE else sendgrid.group_suppressions[1234]
                assert (address in held) is suppressed, ("sendgrid", address, scope)
                if scope == TOPIC:
                    assert (address in hubspot.unsubscribed["5678"]) is suppressed, ("hubspot", address, scope)
                elif suppressed:
                    assert address in hubspot.unsubscribed_all, ("hubspot", address, scope)

    try:
        run_state_machine_as_test(
            Convergence,
            settings=settings(
                max_examples=40,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            ),
        )
    finally:
        http.close()
