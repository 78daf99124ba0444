"""Erased addresses, known only by a keyed hash (README "Erasure").

An erased address's key (its normalized, lower-cased form) is hashed with HMAC-SHA256 under
``[security] erasure_key_env``; ``erased_subjects`` holds the hex digests. Its remaining
non-personal facts (events, suppression states, complaints and bounces) live on under the
pseudonym ``erased:<hash>`` in place of the address, so the same queries read them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.store.bulk import chunks, values_table
from adapters.store.models import ErasedSubject

PSEUDONYM_PREFIX = "erased:"
LOOKUP_CHUNK = 100_000


@functools.lru_cache(maxsize=4)
def _keyed(erasure_key: bytes) -> hmac.HMAC:
    return hmac.new(erasure_key, digestmod=hashlib.sha256)


def address_hash(erasure_key: bytes, email_key: str) -> str:
    """The keyed hash of an address key (hex HMAC-SHA256). Copying a keyed HMAC halves the
    cost of keying one per address (bulk checks hash every address not suppressed)."""
    mac = _keyed(erasure_key).copy()
    mac.update(email_key.encode())
    return mac.hexdigest()


def pseudonym(erasure_key: bytes, email_key: str) -> str:
    """What stands for an erased address in ``email`` and ``email_key`` columns."""
    return PSEUDONYM_PREFIX + address_hash(erasure_key, email_key)


def erased_among(session: Session, erasure_key: bytes | None, email_keys: Iterable[str]) -> dict[str, str]:
    """The erased ones of ``email_keys``, each with its pseudonym. Hashes nothing while no
    address was ever erased (or no key is configured: then none can have been)."""
    keys = list(dict.fromkeys(email_keys))
    if erasure_key is None or not keys or session.execute(select(ErasedSubject.address_hash).limit(1)).first() is None:
        return {}
    by_hash = {address_hash(erasure_key, k): k for k in keys}
    found: dict[str, str] = {}
    for chunk in chunks(list(by_hash), LOOKUP_CHUNK):
        wanted = values_table(session, chunk)
        stmt = select(ErasedSubject.address_hash).join_from(
            wanted, ErasedSubject, ErasedSubject.address_hash == wanted.c.value
        )
        for digest in session.connection().execute(stmt).scalars():
            found[by_hash[digest]] = PSEUDONYM_PREFIX + digest
    return found
