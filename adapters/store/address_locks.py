"""Per-address locks for folding events into ``suppressions`` (README "Consent").

On PostgreSQL two transactions that record events of one address at the same moment would
each read the old state and the last to write would win. Before reading the state,
:func:`lock_addresses` takes a transaction-scoped advisory lock per address key; the second
transaction waits for the first to commit and then reads (READ COMMITTED: each statement sees
what committed before it) the state the first one left. One statement locks a whole batch, in
ascending lock-id order, so two batches that share addresses never wait for each other in a
cycle. SQLite needs nothing: its write transactions (``BEGIN IMMEDIATE``) run one at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger

_LOCK = text("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(:ids) AS k").bindparams(
    bindparam("ids", type_=ARRAY(BigInteger))
)


def lock_id(email_key: str) -> int:
    """The advisory lock id of an address key: a signed 64-bit hash, the same in every process."""
    digest = hashlib.blake2b(email_key.encode(), digest_size=8, person=b"optout-addr").digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_addresses(session: Session, email_keys: Iterable[str]) -> None:
    """Hold, until the transaction ends, the fold lock of every address in ``email_keys``."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted({lock_id(k) for k in email_keys})
    if ids:
        session.execute(_LOCK, {"ids": ids})
