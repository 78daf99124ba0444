"""Stateful property test across processes: opt-outs and resubscribes recorded by this process
and by a second one (some at the same instant, from both), unproven resubscribes from a
provider's staff, provider failures, and worker rounds of one worker or, on PostgreSQL, of two
worker processes at once. After every step the hub holds the reference model's state; at the
end every fake provider does too (issue 14: "two worker processes and concurrent writers from
two processes"). On SQLite, which runs one worker per database by design, the second process
only writes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from adapters.config import Config
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.models import Suppression
from adapters.store.outbox import outbox_summary
from adapters.worker.outbox import Worker
from tests.support.clock import Clock
from tests.support.fake_providers import FakeProviders
from tests.support.peer import PeerProcess

TOPIC = topic_scope("newsletter")  # list1, group 1234, subscription 5678
SCOPES = (GLOBAL_SCOPE, TOPIC)
U, R = Kind.UNSUBSCRIBE, Kind.RESUBSCRIBE


def event(email: str, kind: Kind, scope: str, at: object) -> OptOutEvent:
    """An opt-out by mail, or the person's own resubscribe on the preference centre, at ``at``."""
    if kind is R:
        return OptOutEvent(email, kind, Source.PREFERENCES, scope, Verification.TOKEN, occurred_at=at, received_at=at)
    return OptOutEvent(email, kind, Source.SMTP, scope, Verification.DKIM, occurred_at=at, received_at=at)


def test_two_processes_converge_to_the_consent_rules(
    make_push_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    clock: Clock,
) -> None:
    config = make_push_config(fake_providers, worker={"backoff_max_seconds": 60.0})
    config = replace(
        config, providers=replace(config.providers, sendgrid=replace(config.providers.sendgrid, timeout_seconds=0.2))
    )
    hub = make_hub(config)
    two_workers = hub.engine.dialect.name == "postgresql"
    peer = PeerProcess(config)
    http = requests.Session()
    worker = Worker(hub, make_clients(config, http, now=hub.clock), http=http, owner="here", rng=lambda: 1.0)
    examples = itertools.count()
    mailchimp, sendgrid, hubspot = fake_providers.mailchimp, fake_providers.sendgrid, fake_providers.hubspot

    class TwoProcesses(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.address = f"p@e{next(examples)}.example.com"
            self.model: dict[str, bool] = {}  # scope -> suppressed

        def apply(self, kind: Kind, scope: str) -> None:
            if kind is U:
                self.model[scope] = True
            elif scope in self.model:
                self.model[scope] = False

        @rule(scope=st.sampled_from(SCOPES), kind=st.sampled_from([U, R]), here=st.booleans())
        def record(self, scope: str, kind: Kind, here: bool) -> None:
            now = clock.advance(2)
            if here:
                hub.record([event(self.address, kind, scope, now)])
            else:
                peer.start_record([event(self.address, kind, scope, now)], now)
                assert peer.result() == 1
            self.apply(kind, scope)

        @rule(scope=st.sampled_from(SCOPES), kinds=st.sampled_from([(U, U), (U, R), (R, U), (R, R)]))
        def record_at_once_from_both(self, scope: str, kinds: tuple[Kind, Kind]) -> None:
            """Two opposite (or equal) events committed at the same moment by two processes. Of
            a resubscribe and an opt-out, the opt-out is the newer (issue 14, case 3)."""
            now = clock.advance(2)
            mine, theirs = kinds
            older = now - timedelta(seconds=1)
            mine_at, theirs_at = (older, now) if (mine, theirs) == (R, U) else (now, older if mine is U else now)
            peer.start_record([event(self.address, theirs, scope, theirs_at)], now)
            hub.record([event(self.address, mine, scope, mine_at)])
            assert peer.result() == 1
            for kind in sorted(kinds, key=lambda k: k is U):  # the older resubscribe, then the opt-out
                self.apply(kind, scope)

        @rule()
        def hubspot_staff_resubscribes(self) -> None:
            """A HubSpot user clears the opt-out at HubSpot: unproven, so the hub keeps its state
            and pushes the opt-out back."""
            now = clock.advance(2)
            hubspot.unsubscribed_all.discard(self.address)
            staff = OptOutEvent(
                self.address,
                R,
                Source.HUBSPOT,
                GLOBAL_SCOPE,
                Verification.SIGNATURE,
                occurred_at=now,
                received_at=now,
                metadata={"actor": "staff", "change_source": "CRM_UI"},
            )
            hub.record([staff])

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

        @precondition(lambda self: two_workers)
        @rule()
        def two_worker_processes_round(self) -> None:
            peer.start_push(clock())
            worker.push_due()
            peer.result()

        @rule(seconds=st.sampled_from([1, 5, 30, 120]))
        def time_passes(self, seconds: int) -> None:
            clock.advance(seconds)

        @invariant()
        def hub_holds_the_models_state(self) -> None:
            with hub.sessions() as session:
                for scope, suppressed in self.model.items():
                    assert session.get(Suppression, (self.address, scope)).suppressed is suppressed, scope

        def teardown(self) -> None:
            waiting = 0
            for i in range(20):  # the final drain, retries included, by both workers where they may
                now = clock.advance(3600)
                if two_workers and i % 2:
                    peer.start_push(now)
                    worker.drain()
                    peer.result()
                else:
                    worker.drain()
                with hub.sessions() as session:
                    waiting = sum(c["pending"] for c in outbox_summary(session).values())
                if not waiting:
                    break
            assert not waiting, "the outbox did not drain"
            for fake in (mailchimp, sendgrid, hubspot):
                fake.forget_failures()
            address, glob, topic = self.address, self.model.get(GLOBAL_SCOPE), self.model.get(TOPIC)
            if glob is not None:
                assert (address in sendgrid.global_suppressions) is glob, "sendgrid global"
                assert (mailchimp.members["list2"].get(address) == "unsubscribed") is glob, "mailchimp list2"
                if glob:  # HubSpot has no undo for unsubscribe-all
                    assert address in hubspot.unsubscribed_all, "hubspot unsubscribe-all"
            if topic is not None:
                assert (address in sendgrid.group_suppressions[1234]) is topic, "sendgrid group"
                assert (address in hubspot.unsubscribed["5678"]) is topic, "hubspot subscription"
            if glob is not None or topic is not None:
                # list1 is the topic's list and one of the global lists: it is left only when both allow
                assert (mailchimp.members["list1"].get(address) == "unsubscribed") is bool(glob or topic), "list1"

    try:
        run_state_machine_as_test(
            TwoProcesses,
            settings=settings(
                max_examples=15,
                stateful_step_count=12,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            ),
        )
    finally:
        http.close()
        peer.close()
