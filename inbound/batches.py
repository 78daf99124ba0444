"""Batches from a work queue: what both inbound threads (the evidence writer and the
classification thread) take at once."""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def take_batch(
    source: queue.SimpleQueue[T | None] | queue.Queue[T | None], first: T, limit: int
) -> tuple[list[T], bool]:
    """``first`` and what else is queued right now, up to ``limit`` items; and whether the
    stop marker (``None``) was reached, which ends the batch."""
    batch = [first]
    while len(batch) < limit:
        try:
            nxt = source.get_nowait()
        except queue.Empty:
            break
        if nxt is None:
            return batch, True
        batch.append(nxt)
    return batch, False
