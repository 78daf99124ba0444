"""Stateful property test: random opt-outs and resubscribes (proven and not, from every
source, global and topic scopes, in and out of order, dated ahead) recorded through the real
store, compared after every step with a small reference model of README "Consent"."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification
from adapters.hub import Hub
from adapters.store.queries import address_state
from tests.support.clock import Clock

SCOPES = (GLOBAL_SCOPE, "topic:newsletter", "topic:offers")
PROVIDERS = ("mailchimp", "sendgrid", "hubspot")
SKEW = timedelta(minutes=5)
# When an event says it occurred, relative to its receipt: late, on time, a little fast, a year ahead.
OFFSETS = (timedelta(minutes=-10), timedelta(0), timedelta(minutes=2), timedelta(days=365))


def proven(source: str, verification: str, actor: str | None, admin: bool, reason: bool, opt_out_source: str) -> bool:
    """The table of README "Consent": who may lift an opt-out from ``opt_out_source``."""
    if source == "preferences":
        return verification == "token"
    if source == "api":
        return admin and reason
    if source in PROVIDERS:
        return actor == "person" and verification in ("signature", "token") and opt_out_source == source
    return False


class ConsentMachine(RuleBasedStateMachine):
    hub: Hub
    clock: Clock
    addresses: Any

    def __init__(self) -> None:
        super().__init__()
        self.email = f"p{next(self.addresses)}@example.com"
        self.model: dict[str, tuple[bool, str, Any]] = {}  # scope -> (suppressed, opt-out source, last time)

    @initialize()
    def start(self) -> None:
        self.clock.advance(3600)

    def _record(self, event: OptOutEvent) -> None:
        self.hub.record([event])

    @rule(
        scope=st.sampled_from(SCOPES),
        source=st.sampled_from([s for s in Source]),
        kind=st.sampled_from([Kind.UNSUBSCRIBE, Kind.COMPLAINT]),
        offset=st.sampled_from(OFFSETS),
    )
    def opt_out(self, scope: str, source: Source, kind: Kind, offset: timedelta) -> None:
        now = self.clock.advance(60)
        at = min(now + offset, now + SKEW)
        self._record(OptOutEvent(self.email, kind, source, scope, occurred_at=now + offset, received_at=now))
        off, by, last = self.model.get(scope, (False, "", None))
        if not off:
            self.model[scope] = (True, source.value, at)
        else:
            self.model[scope] = (True, by, max(last, at))

    @rule(
        scope=st.sampled_from(SCOPES),
        source=st.sampled_from([Source.PREFERENCES, Source.API, Source.MAILCHIMP, Source.SENDGRID, Source.HUBSPOT]),
        verification=st.sampled_from(list(Verification)),
        actor=st.sampled_from([None, "person", "staff", "automation"]),
        admin=st.booleans(),
        reason=st.booleans(),
        offset=st.sampled_from(OFFSETS),
    )
    def resubscribe(
        self,
        scope: str,
        source: Source,
        verification: Verification,
        actor: str | None,
        admin: bool,
        reason: bool,
        offset: timedelta,
    ) -> None:
        now = self.clock.advance(60)
        at = min(now + offset, now + SKEW)
        meta: dict[str, str] = {}
        if actor is not None:
            meta["actor"] = actor
        if admin:
            meta["admin"] = "Dana Ops"
        event = OptOutEvent(
            self.email,
            Kind.RESUBSCRIBE,
            source,
            scope,
            verification,
            occurred_at=now + offset,
            received_at=now,
            reason="asked" if reason else None,
            metadata=meta or None,
        )
        self._record(event)
        off, by, last = self.model.get(scope, (False, "", None))
        if off and last <= at and proven(source.value, verification.value, actor, admin, reason, by):
            self.model[scope] = (False, "", at)

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        with self.hub.sessions() as session:
            state = address_state(session, self.email)
        assert sorted(state["scopes"]) == sorted(s for s, (off, _, _) in self.model.items() if off)


def test_the_store_follows_the_consent_rules(hub: Hub, clock: Clock) -> None:
    ConsentMachine.hub, ConsentMachine.clock, ConsentMachine.addresses = hub, clock, itertools.count()
    run_state_machine_as_test(
        ConsentMachine,
        settings=settings(
            max_examples=40, stateful_step_count=12, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
