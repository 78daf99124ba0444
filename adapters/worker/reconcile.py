"""Reconciliation (README "Reconciliation"): pull each provider's opt-outs back into the hub.

For each provider, a pull of changes since the last one that ended (or, with ``full``, the
backfill of everything it holds) runs page by page; each page is stored with its checkpoint
in one transaction (:func:`adapters.store.reconcile.store_page`; consecutive pages up to
:data:`STORE_EVENTS` events share one), so a pull that dies resumes after the last page stored
and a page read twice stores nothing twice. A provider that fails
leaves its checkpoint for the next pull and does not stop the others.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TextIO

import requests
from sqlalchemy.exc import SQLAlchemyError

from adapters.errors import OptOutHubError, StoreError
from adapters.hub import Hub
from adapters.providers import make_pullers
from adapters.providers.pull import Puller, PullPage
from adapters.store.reconcile import CHANGES, FULL, finish_run, start_run, store_page
from adapters.worker.constant_contact import state_for

log = logging.getLogger(__name__)

STORE_EVENTS = 5000  # pages are stored together up to this many events: fewer, larger commits


@dataclasses.dataclass
class Tally:
    """One provider's pull, as ``optout-hub reconcile`` prints it."""

    pulled: int = 0  # records read (opt-outs, and addresses read as mailable)
    new: int = 0  # opt-outs the hub did not hold
    drift: int = 0  # pushes queued again
    conflicts: int = 0  # suppressions removed at the provider
    calls: int = 0
    resumed: bool = False
    error: str = ""

    def line(self, slug: str) -> str:
        text = (
            f"{slug}: pulled {self.pulled}, new opt-outs {self.new}, drift repaired {self.drift}, "
            f"conflicts {self.conflicts}, calls {self.calls}"
        )
        return text + (" (resumed)" if self.resumed else "") + (f"; error: {self.error}" if self.error else "")


Progress = Callable[[str, Tally], None]


def reconcile(
    hub: Hub,
    pullers: Mapping[str, Puller],
    *,
    full: bool = False,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> dict[str, Tally]:
    """Pull every provider in ``pullers``; ``since`` overrides the window of changes."""
    return {
        slug: pull_provider(hub, puller, full=full, since=since, progress=progress) for slug, puller in pullers.items()
    }


def pull_provider(
    hub: Hub, puller: Puller, *, full: bool, since: datetime | None, progress: Progress | None = None
) -> Tally:
    kind = FULL if full else CHANGES
    slug = puller.slug
    tally = Tally()
    try:
        with hub.sessions.begin() as session:
            run = start_run(session, slug, kind, since=since, explicit=since is not None, now=hub.clock())
        tally.resumed = run.resumed
        buffered: list[PullPage] = []
        try:
            for page in puller.pull(since=run.since, checkpoint=run.checkpoint):
                buffered.append(page)
                if sum(len(p.events) for p in buffered) >= STORE_EVENTS or page.checkpoint is None:
                    _store(hub, slug, kind, buffered, tally)
                    buffered = []
                    if progress is not None:
                        progress(slug, tally)
        except OptOutHubError:
            _store(hub, slug, kind, buffered, tally)  # what was read before the failure is kept
            raise
        _store(hub, slug, kind, buffered, tally)
        with hub.sessions.begin() as session:
            finish_run(session, slug, kind, now=hub.clock())
    except (OptOutHubError, SQLAlchemyError) as exc:
        tally.error = str(exc) if isinstance(exc, OptOutHubError) else StoreError.__name__ + ": " + type(exc).__name__
        log.warning(
            "reconcile %s: stopped (%s); the next pull resumes from its checkpoint",
            slug,
            tally.error,
            exc_info=isinstance(exc, SQLAlchemyError),
        )
    return tally


def _store(hub: Hub, slug: str, kind: str, pages: list[PullPage], tally: Tally) -> None:
    """Store pages read in a row, and the last one's checkpoint, in one transaction (no HTTP
    call is made while it is open)."""
    if not pages:
        return
    with hub.sessions.begin() as session:
        results = [store_page(session, slug, kind, page, hub.policy, now=hub.clock()) for page in pages]
    for page, result in zip(pages, results, strict=True):
        hub.count_events(result.recorded)
        tally.pulled += len(page.events) + len(page.mailable)
        tally.new += result.new_optouts
        tally.drift += result.drift
        tally.conflicts += result.conflicts
        tally.calls += page.calls


def _pullers(hub: Hub, http: requests.Session) -> dict[str, Puller]:
    """Every enabled provider that can be read back; Constant Contact's with its stored tokens."""
    return make_pullers(hub.config, http, now=hub.clock, cc_state=state_for(hub))


def run_every(hub: Hub, stop: threading.Event) -> None:
    """The worker's reconciliation loop: a pull of changes every ``[reconcile]
    interval_minutes``, the first one interval after the start."""
    interval = hub.config.reconcile.interval_minutes * 60.0
    with requests.Session() as http:
        while not stop.wait(interval):
            try:
                pullers = _pullers(hub, http)
                for slug, tally in reconcile(hub, pullers).items():
                    log.info("reconcile %s", tally.line(slug))
            except Exception:  # never stop reconciling for good
                log.exception("reconcile: round failed; trying again next interval")


class TerminalProgress:
    """A one-line progress display on a terminal (a backfill may read millions of records):
    records pulled and calls made so far, per provider; nothing when ``stream`` is not a tty."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.current = ""

    def __call__(self, slug: str, tally: Tally) -> None:
        if not self.enabled:
            return
        if self.current and slug != self.current:
            self.stream.write("\n")
        self.current = slug
        spin = "|/-\\"[tally.calls % 4]
        self.stream.write(f"\r{spin} {slug}: {tally.pulled:,} pulled, {tally.new:,} new, {tally.calls:,} calls")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.current:
            self.stream.write("\n")
            self.stream.flush()


def parse_since(value: str | None) -> datetime | None:
    """``--since``: an ISO 8601 time (naive means UTC)."""
    if not value:
        return None
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise OptOutHubError(f"--since: not an ISO 8601 time: {value!r}") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def run_command(hub: Hub, *, provider: str | None, since: str | None, full: bool, stream: TextIO) -> list[str]:
    """``optout-hub reconcile``: the lines to print, one per provider; failed ones say so."""
    with requests.Session() as http:
        pullers = _pullers(hub, http)
        if provider is not None:
            if provider not in pullers:
                raise OptOutHubError(f"--provider: {provider!r} is not an enabled provider that can be read back")
            pullers = {provider: pullers[provider]}
        progress = TerminalProgress(stream)
        try:
            tallies = reconcile(hub, pullers, full=full, since=parse_since(since), progress=progress)
        finally:
            progress.close()
    return [tally.line(slug) for slug, tally in tallies.items()] or ["no provider enabled"]
