"""Recipients: what an unsubscribe token points at, written idempotently when headers are issued."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from .addresses import normalize_address
from .config import Config
from .errors import PayloadError, TokenError
from .models import Recipient
from .store import _chunks, _insert
from .tokens import TokenSigner, unsubscribe_headers

MAX_HEADERS_BATCH = 10_000


@dataclasses.dataclass(frozen=True)
class RecipientRequest:
    email: str
    topic: str | None = None
    campaign: str | None = None


@dataclasses.dataclass(frozen=True)
class IssuedHeaders:
    email: str
    token: str
    list_unsubscribe: str
    list_unsubscribe_post: str


def issue_tokens(session: Session, signer: TokenSigner, config: Config, requests: Sequence[RecipientRequest], *, now: datetime) -> list[IssuedHeaders]:
    """Tokens and header values for many recipients (one row per address, topic, campaign)."""
    if len(requests) > MAX_HEADERS_BATCH:
        raise PayloadError(f"at most {MAX_HEADERS_BATCH} recipients per call")
    rows = []
    for i, req in enumerate(requests):
        if req.topic is not None and config.topic(req.topic) is None:
            raise PayloadError(f"recipients[{i}].topic: unknown topic {req.topic!r}")
        if req.campaign is not None and (not isinstance(req.campaign, str) or len(req.campaign) > 200):
            raise PayloadError(f"recipients[{i}].campaign: must be a string of at most 200 characters")
        address = normalize_address(req.email)
        rows.append({"email": address.email, "email_key": address.key, "topic": req.topic or "", "campaign": req.campaign or "", "created_at": now})
    unique = list({(r["email_key"], r["topic"], r["campaign"]): r for r in rows}.values())
    if unique:
        session.execute(_insert(session, Recipient).on_conflict_do_nothing(index_elements=["email_key", "topic", "campaign"]), unique)
    ids: dict[tuple[str, str, str], int] = {}
    for chunk in _chunks(unique, 5000):
        wanted = [(r["email_key"], r["topic"], r["campaign"]) for r in chunk]
        stmt = select(Recipient.id, Recipient.email_key, Recipient.topic, Recipient.campaign).where(tuple_(Recipient.email_key, Recipient.topic, Recipient.campaign).in_(wanted))
        ids.update({(r.email_key, r.topic, r.campaign): r.id for r in session.execute(stmt)})
    issued = []
    domain = config.smtp.domains[0]
    for r in rows:
        token = signer.issue(ids[(r["email_key"], r["topic"], r["campaign"])])
        lu, lup = unsubscribe_headers(token, mail_domain=domain, public_url=config.http.public_url)
        issued.append(IssuedHeaders(r["email"], token, lu, lup))
    return issued


def resolve_token(session: Session, signer: TokenSigner, token: str) -> Recipient:
    """The recipient a token names; :class:`TokenError` if forged or unknown."""
    recipient = session.get(Recipient, signer.verify(token))
    if recipient is None:
        raise TokenError("unknown token")
    return recipient
