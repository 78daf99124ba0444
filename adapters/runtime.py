"""Process-wide settings for the long-running commands."""

from __future__ import annotations

import gc

# Collect young objects after this many net allocations instead of CPython's 700.
YOUNG_THRESHOLD = 100_000


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for batch work, once start-up is done.

    One 1,000-event webhook delivery or CSV chunk keeps tens of thousands of objects alive
    for a moment. With CPython's defaults that triggers dozens of young collections per
    delivery, promotes the batch to the old generation, and soon a full collection that walks
    every module, SQLAlchemy table and Flask route loaded at start-up, again and again.
    Freezing the start-up heap takes it out of every collection, and a higher young threshold
    lets a batch die by reference counting before the collector ever looks at it
    (bench/webhooks.py: about 15% more durable events/s). Cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 50, 100)
