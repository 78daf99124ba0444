"""What the Constant Contact adapter keeps in the database (README "Constant Contact").

:class:`ConstantContactState` is the adapter's :class:`~adapters.providers.constant_contact.CCState`:
its OAuth tokens (refreshed by one process at a time: ``SELECT ... FOR UPDATE`` on PostgreSQL,
SQLite's ``BEGIN IMMEDIATE`` write lock, and the row re-read once the lock is held), the day's
call budget shared by every process, and the contact ids learned. The functions below keep the
poll's checkpoint and answer ``/admin``.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from adapters.config import ConstantContactConfig
from adapters.errors import ProviderAPIError
from adapters.providers.constant_contact import SLUG, Pacer, next_midnight
from adapters.providers.oauth import Grant, ReauthorizationNeeded, TokenSet
from adapters.store.bulk import chunks, insert_statement
from adapters.store.models import OAuthToken, ProviderBudget, ProviderContact, ProviderPull

AUTHORIZATION_WINDOW = timedelta(minutes=10)  # an admin has this long to finish re-authorizing


def _locked(session: Session, model: type[OAuthToken] | type[ProviderBudget], **defaults: object) -> object:
    """The provider's row of ``model``, created if missing, locked for this transaction."""
    session.execute(
        insert_statement(session, model).on_conflict_do_nothing(index_elements=["provider"]),
        [{"provider": SLUG, **defaults}],
    )
    stmt = select(model).where(model.provider == SLUG)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one()


def _grant(row: OAuthToken | None) -> Grant:
    if row is None:
        return Grant()
    tokens = None
    if row.access_token and row.refresh_token and row.expires_at:
        tokens = TokenSet(row.access_token, row.expires_at, row.refresh_token)
    return Grant(tokens, row.dead)


class ConstantContactState:
    """One per process: the pacer (4 calls a second) is this process's, the rest is shared
    through the database."""

    def __init__(
        self, sessions: sessionmaker[Session], config: ConstantContactConfig, *, clock: Callable[[], datetime]
    ) -> None:
        self.sessions = sessions
        self.daily = config.daily_requests
        self.clock = clock
        self.pacer = Pacer(config.requests_per_second)

    # Tokens ------------------------------------------------------------------------------

    def load(self) -> Grant:
        with self.sessions() as session:
            return _grant(session.get(OAuthToken, SLUG))

    def refresh(self, renew: Callable[[Grant], TokenSet | None]) -> Grant:
        refused: ReauthorizationNeeded | None = None
        with self.sessions.begin() as session:
            row = _locked(session, OAuthToken, updated_at=self.clock())
            assert isinstance(row, OAuthToken)
            try:
                tokens = renew(_grant(row))
            except ReauthorizationNeeded as exc:
                row.dead, row.updated_at = exc.why, self.clock()
                refused = exc
            else:
                if tokens is not None:
                    row.access_token, row.expires_at, row.refresh_token = (
                        tokens.access_token,
                        tokens.expires_at,
                        tokens.refresh_token,
                    )
                    row.updated_at = self.clock()
            grant = _grant(row)
        if refused is not None:
            raise refused
        return grant

    def save(self, tokens: TokenSet) -> None:
        with self.sessions.begin() as session:
            row = _locked(session, OAuthToken, updated_at=self.clock())
            assert isinstance(row, OAuthToken)
            row.access_token, row.expires_at, row.refresh_token = (
                tokens.access_token,
                tokens.expires_at,
                tokens.refresh_token,
            )
            row.dead, row.auth_state, row.auth_state_until, row.updated_at = None, None, None, self.clock()

    # Budget ------------------------------------------------------------------------------

    def spend(self) -> None:
        now = self.clock()
        today = now.date().isoformat()
        with self.sessions.begin() as session:
            row = _locked(session, ProviderBudget, day=today, calls=0)
            assert isinstance(row, ProviderBudget)
            if row.day != today:
                row.day, row.calls = today, 0
            if row.blocked_until is not None and now < row.blocked_until:
                why = "Constant Contact's daily quota is spent (quota_exceeded)"
            elif row.calls >= self.daily:
                why = f"the day's budget of {self.daily} calls is spent"
            else:
                row.calls += 1
                return
        until = row.blocked_until if row.blocked_until and now < row.blocked_until else next_midnight(now)
        raise ProviderAPIError(
            SLUG,
            f"{why}; waiting until {until:%Y-%m-%d %H:%M} UTC",
            status=429,
            retry_after=(until - now).total_seconds(),
        )

    def exhaust(self, until: datetime) -> None:
        with self.sessions.begin() as session:
            row = _locked(session, ProviderBudget, day=self.clock().date().isoformat(), calls=0)
            assert isinstance(row, ProviderBudget)
            row.blocked_until = until

    # Contact ids -------------------------------------------------------------------------

    def contact_ids(self, keys: Collection[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self.sessions() as session:
            for chunk in chunks(list(keys), 500):
                stmt = select(ProviderContact.email_key, ProviderContact.contact_id).where(
                    ProviderContact.provider == SLUG, ProviderContact.email_key.in_(chunk)
                )
                found.update(session.execute(stmt).tuples().all())
        return found

    def remember(self, ids: Mapping[str, str]) -> None:
        rows = [{"provider": SLUG, "email_key": k, "contact_id": v} for k, v in ids.items()]
        with self.sessions.begin() as session:
            stmt = insert_statement(session, ProviderContact)
            stmt = stmt.on_conflict_do_update(
                index_elements=["provider", "email_key"], set_={"contact_id": stmt.excluded.contact_id}
            )
            for chunk in chunks(rows, 500):
                session.execute(stmt, list(chunk))

    # Re-authorization --------------------------------------------------------------------

    def begin_authorization(self) -> str:
        """A fresh single-use ``state`` for the authorization-code flow (CSRF), kept for
        :data:`AUTHORIZATION_WINDOW`."""
        state = secrets.token_urlsafe(32)
        with self.sessions.begin() as session:
            row = _locked(session, OAuthToken, updated_at=self.clock())
            assert isinstance(row, OAuthToken)
            row.auth_state, row.auth_state_until = state, self.clock() + AUTHORIZATION_WINDOW
        return state

    def consume_authorization(self, state: str) -> bool:
        """Whether ``state`` is the one issued and still valid; it can be used once."""
        with self.sessions.begin() as session:
            row = _locked(session, OAuthToken, updated_at=self.clock())
            assert isinstance(row, OAuthToken)
            issued, until = row.auth_state, row.auth_state_until
            row.auth_state, row.auth_state_until = None, None
        return bool(issued and until and self.clock() < until and hmac.compare_digest(issued.encode(), state.encode()))


# --- the poll's checkpoint and /admin ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PullPosition:
    since: datetime | None
    started_at: datetime | None
    checkpoint: str | None
    finished_at: datetime | None


def pull_position(session: Session) -> PullPosition:
    row = session.get(ProviderPull, SLUG)
    if row is None:
        return PullPosition(None, None, None, None)
    return PullPosition(row.since, row.started_at, row.checkpoint, row.finished_at)


def save_pull_page(session: Session, *, started_at: datetime, checkpoint: str | None, now: datetime) -> None:
    """After a page, in the transaction that stores its events: where to resume, or (with no
    checkpoint) the pull finished and the next one starts from when this one started."""
    session.execute(
        insert_statement(session, ProviderPull).on_conflict_do_nothing(index_elements=["provider"]),
        [{"provider": SLUG}],
    )
    done = checkpoint is None
    values: dict[str, object] = {"checkpoint": checkpoint, "started_at": None if done else started_at}
    if done:
        values.update(since=started_at, finished_at=now, last_error=None)
    session.execute(update(ProviderPull).where(ProviderPull.provider == SLUG).values(**values))


def note_pull_error(session: Session, error: str, now: datetime) -> None:
    """A failed poll is tried again at the next interval (it resumes from its checkpoint)."""
    session.execute(
        insert_statement(session, ProviderPull).on_conflict_do_nothing(index_elements=["provider"]),
        [{"provider": SLUG}],
    )
    session.execute(
        update(ProviderPull).where(ProviderPull.provider == SLUG).values(last_error=error[:2000], finished_at=now)
    )


@dataclasses.dataclass(frozen=True)
class Status:
    """Constant Contact on ``/admin`` and ``/metrics``."""

    dead: str | None
    connected: bool
    budget_remaining: int
    blocked_until: datetime | None
    pull: PullPosition
    last_pull_error: str | None


def status(session: Session, config: ConstantContactConfig, now: datetime) -> Status:
    token = session.get(OAuthToken, SLUG)
    budget = session.get(ProviderBudget, SLUG)
    pull = session.get(ProviderPull, SLUG)
    used = budget.calls if budget is not None and budget.day == now.date().isoformat() else 0
    blocked = (
        budget.blocked_until if budget is not None and budget.blocked_until and now < budget.blocked_until else None
    )
    return Status(
        dead=token.dead if token else None,
        connected=bool(token and token.refresh_token and not token.dead),
        budget_remaining=0 if blocked else max(config.daily_requests - used, 0),
        blocked_until=blocked,
        pull=pull_position(session),
        last_pull_error=pull.last_error if pull else None,
    )
