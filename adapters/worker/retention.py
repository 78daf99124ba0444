"""Purging expired raw evidence (README "Erasure"), run by the worker about hourly and by
``optout-hub erase --expired-evidence``."""

from __future__ import annotations

import logging
from datetime import timedelta

from adapters.hub import Hub
from adapters.store.retention import purge_evidence_batch

log = logging.getLogger(__name__)
BATCH = 1000  # rows per transaction: short write locks on a large backlog
INTERVAL = timedelta(hours=1)  # how often the worker purges


def purge_expired_evidence(hub: Hub) -> int:
    """Purge the evidence older than ``[retention] evidence_days`` (none when 0); how many rows."""
    days = hub.config.retention.evidence_days
    if days <= 0:
        return 0
    before = hub.clock() - timedelta(days=days)
    total = 0
    while True:
        with hub.sessions.begin() as session:
            n = purge_evidence_batch(session, before=before, limit=BATCH)
        total += n
        if n < BATCH:
            break
    if total:
        log.info("retention: purged %d evidence rows older than %d days", total, days)
    return total
