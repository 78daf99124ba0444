"""Recipients: what an unsubscribe token points at, written idempotently when headers are issued."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, tuple_
from sqlalchemy.orm import Session

from adapters.addresses import normalize_address
from adapters.config import Config
from adapters.errors import PayloadError, TokenError
from adapters.store.bulk import chunks, insert_statement
from adapters.store.models import Recipient, RecipientCount
from adapters.tokens import TokenSigner, unsubscribe_headers

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


def issue_tokens(
    session: Session, signer: TokenSigner, config: Config, requests: Sequence[RecipientRequest], *, now: datetime
) -> list[IssuedHeaders]:
    """Tokens and header values for many recipients (one row per address, topic, campaign)."""
    if len(requests) > MAX_HEADERS_BATCH:
        raise PayloadError(f"at most {MAX_HEADERS_BATCH} recipients per call")
    rows: list[dict[str, Any]] = []
    for i, req in enumerate(requests):
        if req.topic is not None and config.topic(req.topic) is None:
            raise PayloadError(f"recipients[{i}].topic: unknown topic {req.topic!r}")
        if req.campaign is not None and (not isinstance(req.campaign, str) or len(req.campaign) > 200):
            raise PayloadError(f"recipients[{i}].campaign: must be a string of at most 200 characters")
        address = normalize_address(req.email)
        rows.append(
            {
                "email": address.email,
                "email_key": address.key,
                "topic": req.topic or "",
                "campaign": req.campaign or "",
                "created_at": now,
            }
        )
    unique = list({_key(r): r for r in rows}.values())
    ids = _ids(session, unique)
    new = [r for r in unique if _key(r) not in ids]
    if new:
        before = _issued_before(session, new)
        insert = insert_statement(session, Recipient).on_conflict_do_nothing(
            index_elements=["email_key", "topic", "campaign"]
        )
        inserted = session.execute(insert.returning(*_ROW), new).all()
        ids.update(_id_map(inserted))
        ids.update(_ids(session, [r for r in new if _key(r) not in ids]))  # issued just now elsewhere
        _count_first_issues(session, inserted, before)
    issued = []
    domain = config.smtp.domains[0]
    for r in rows:
        token = signer.issue(ids[(r["email_key"], r["topic"], r["campaign"])])
        lu, lup = unsubscribe_headers(token, mail_domain=domain, public_url=config.http.public_url)
        issued.append(IssuedHeaders(r["email"], token, lu, lup))
    return issued


_ROW = (Recipient.id, Recipient.email_key, Recipient.topic, Recipient.campaign)


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["email_key"], row["topic"], row["campaign"])


def _id_map(rows: Iterable[Row[Any]]) -> dict[tuple[str, str, str], int]:
    return {(r.email_key, r.topic, r.campaign): r.id for r in rows}


def _ids(session: Session, rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    """The ids of the recipient rows that already exist for ``rows``."""
    ids: dict[tuple[str, str, str], int] = {}
    for chunk in chunks(rows, 5000):
        stmt = select(*_ROW).where(
            tuple_(Recipient.email_key, Recipient.topic, Recipient.campaign).in_([_key(r) for r in chunk])
        )
        ids.update(_id_map(session.execute(stmt)))
    return ids


def _issued_before(session: Session, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """``(kind, name, email_key)`` for each campaign and topic of ``rows`` that already has a
    row for the address (under another topic or campaign)."""
    seen: set[tuple[str, str, str]] = set()
    for kind, column in (("campaign", Recipient.campaign), ("topic", Recipient.topic)):
        names = {r[kind] for r in rows if r[kind]}
        for chunk in chunks(sorted({r["email_key"] for r in rows if r[kind]}), 5000):
            stmt = (
                select(Recipient.email_key, column).distinct().where(Recipient.email_key.in_(chunk), column.in_(names))
            )
            seen.update((kind, name, key) for key, name in session.execute(stmt))
    return seen


def _count_first_issues(session: Session, inserted: Sequence[Row[Any]], seen: set[tuple[str, str, str]]) -> None:
    """Add to ``recipient_counts`` each campaign and topic that a new row gives an address for
    the first time (``seen``: those it already had); an address counts once per name."""
    counts: Counter[tuple[str, str]] = Counter()
    for r in inserted:
        for kind, name in (("campaign", r.campaign), ("topic", r.topic)):
            if name and (kind, name, r.email_key) not in seen:
                seen.add((kind, name, r.email_key))
                counts[(kind, name)] += 1
    if counts:
        stmt = insert_statement(session, RecipientCount)
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "name"],
            set_={"addresses": RecipientCount.__table__.c.addresses + stmt.excluded.addresses},
        )
        session.execute(
            stmt, [{"kind": k, "name": n, "addresses": c} for (k, n), c in sorted(counts.items())]
        )  # sorted: no deadlock


def resolve_token(session: Session, signer: TokenSigner, token: str) -> Recipient:
    """The recipient a token names; :class:`TokenError` if forged or unknown."""
    recipient = session.get(Recipient, signer.verify(token))
    if recipient is None:
        raise TokenError("unknown token")
    return recipient
