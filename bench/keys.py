"""Addresses and provider event ids for bench loads, scattered as real ones are.

A list's addresses and a provider's event ids land all over the store's indexes; numbered
keys (``person1``, ``person2``, ...) would fill a few index pages per 1,000-event batch and
flatter every figure that writes batches. These are hashes of the item's number: random-
looking, unique, and the same on every run.
"""

from __future__ import annotations

import base64
import hashlib


def _digest(n: int) -> bytes:
    return hashlib.blake2b(n.to_bytes(8, "big"), digest_size=16).digest()


def address(n: int, domain: str = "example.com") -> str:
    """The ``n``-th address of a load: a random-looking local part at ``domain``."""
    return f"{_digest(n)[:6].hex()}@{domain}"


def event_id(n: int) -> str:
    """The ``n``-th provider event id: 16 random-looking bytes in URL-safe base64, like a
    SendGrid ``sg_event_id``."""
    return base64.urlsafe_b64encode(_digest(n)).decode()
