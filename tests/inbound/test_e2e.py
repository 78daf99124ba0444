"""End to end: ``optout-hub smtp`` as a real process on a free port, driven by Python's
``smtplib`` and by ``swaks`` (Debian package; ``.ci/run`` installs it), then checked with
``optout-hub status``. Includes the crash test: the process is killed (SIGKILL) after it
answered ``250`` and before it classified the message, and after a restart the address is
opted out; and the outage test: messages answered ``250`` while the database refuses their
events are honoured once it accepts them again, without a restart; and ``serve`` under mixed
SMTP load, killed (SIGKILL) at random moments and restarted, honours every unsubscribe it
answered ``250``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.config import load_config
from adapters.hub import Hub as CoreHub
from adapters.store.database import make_engine
from adapters.store.models import Suppression
from adapters.tokens import TOKEN_LENGTH
from inbound.classification import DELAY_ENV
from tests.support.environment import TEST_SECRET
from tests.support.mail import DOMAIN, REPLIES, message
from tests.support.outage import events_refused
from tests.support.servers import free_port

SWAKS = shutil.which("swaks")
needs_swaks = pytest.mark.usefixtures("swaks")  # skips where swaks is missing, fails under CI


class Hub:
    """One configuration (database, port) and the ``optout-hub`` processes run on it."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.config = tmp_path / "optout-hub.toml"
        self.config.write_text(
            f"""
[database]
url = "{database_url}"

[http]
port = {free_port()}

[smtp]
port = {self.port}
domains = ["{DOMAIN}"]
max_message_bytes = 20000
timeout_seconds = 10

[worker]
enabled = false

[inbound]
retry_max_seconds = 1.0

[[topics]]
name = "newsletter"
""",
            encoding="utf-8",
        )
        self.env = {**os.environ, "OPTOUT_HUB_SECRET": TEST_SECRET, "PYTHONUNBUFFERED": "1"}
        self.env.pop("OPTOUT_HUB_CONFIG", None)
        self.proc: subprocess.Popen[str] | None = None
        self.cli("db", "upgrade")

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "adapters", *args, "--config", str(self.config)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, command: str = "smtp", **env: str) -> None:
        """Run ``optout-hub <command>`` (``smtp`` or ``serve``) until its listener is up."""
        assert self.proc is None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adapters", command, "--config", str(self.config)],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                self._close()
                raise AssertionError(f"optout-hub {command} exited with {code}")
            if line.startswith("optout-hub: SMTP listening on"):
                assert line.strip().endswith(f"127.0.0.1:{self.port}")
                return
        raise AssertionError(f"optout-hub {command} did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._close()
        return code

    def _close(self) -> None:
        assert self.proc is not None
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def status(self, email: str) -> dict:
        return json.loads(self.cli("status", email))

    def wait_suppressed(self, email: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.status(email)
            if state["suppressed"] or time.monotonic() > deadline:
                return state
            time.sleep(0.2)

    def mailto(self, email: str, topic: str | None = None) -> str:
        args = ["headers", email] + (["--topic", topic] if topic else [])
        out = self.cli(*args)
        match = re.search(r"<mailto:([^>]+)>", out)
        assert match, out
        return match.group(1)

    def swaks(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert SWAKS is not None
        return subprocess.run(
            [SWAKS, "--server", f"127.0.0.1:{self.port}", "--helo", "client.example.org", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def hub_process(tmp_path: Path, database_url: str) -> Iterator[Hub]:
    hub = Hub(tmp_path, database_url)
    yield hub
    if hub.proc is not None:
        hub.kill()


def _smtplib_send(hub: Hub, raw: bytes, rcpt: str, mail_from: str = "jane@example.org") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", hub.port, timeout=20) as smtp:
        smtp.ehlo("client.example.org")
        smtp.mail(mail_from)
        assert smtp.rcpt(rcpt)[0] == 250
        return smtp.data(raw)


def test_smtplib_mailto_unsubscribe_with_a_lower_cased_token(hub_process: Hub) -> None:
    hub_process.start()
    mailto = hub_process.mailto("Ann.Example@Example.COM", topic="newsletter")
    local, _, _ = mailto.partition("@")
    assert len(local) == len("unsub-") + TOKEN_LENGTH
    lowered = mailto.lower()  # what a case-folding sending server delivers
    raw = message(
        "This message was automatically generated by Gmail.",
        subject="Unsubscribe",
        sender="ann.example@example.com",
        to=lowered,
    )
    code, _ = _smtplib_send(hub_process, raw, lowered, mail_from="ann.example@example.com")
    assert code == 250
    state = hub_process.wait_suppressed("ann.example@example.com")
    assert state["scopes"] == ["topic:newsletter"]
    (event,) = state["events"]
    assert (event["source"], event["kind"], event["verification"]) == ("smtp", "unsubscribe", "token")
    assert hub_process.stop() == 0


@needs_swaks
def test_swaks_mailto_unsubscribe_with_an_upper_cased_address(hub_process: Hub) -> None:
    hub_process.start()
    mailto = hub_process.mailto("bob@example.net").upper()
    done = hub_process.swaks(
        "--from",
        "bob@example.net",
        "--to",
        mailto,
        "--header",
        "Subject: unsubscribe",
        "--header",
        "X-Apple-Unsubscribe: true",
        "--header",
        "Auto-Submitted: auto-replied",
        "--body",
        "Apple Mail sent this email to unsubscribe from the message.",
    )
    assert done.returncode == 0, done.stdout
    assert "250 2.0.0" in done.stdout
    state = hub_process.wait_suppressed("bob@example.net")
    assert state["scopes"] == ["global"] and state["events"][0]["verification"] == "token"


@needs_swaks
def test_swaks_stop_reply(hub_process: Hub) -> None:
    hub_process.start()
    done = hub_process.swaks(
        "--from",
        "carol@example.org",
        "--to",
        REPLIES,
        "--header",
        "From: Carol <carol@example.org>",
        "--header",
        "Subject: Re: Our spring newsletter",
        "--body",
        "STOP\n\nOn Mon, Jun 3, 2024, Shop <news@shop.example> wrote:\n> Spring sale! To unsubscribe click here.\n",
    )
    assert done.returncode == 0, done.stdout
    state = hub_process.wait_suppressed("carol@example.org")
    assert state["suppressed"] and state["events"][0]["verification"] == "none"


@needs_swaks
def test_swaks_relay_attempt_is_refused(hub_process: Hub) -> None:
    hub_process.start()
    done = hub_process.swaks("--from", "spammer@example.net", "--to", "victim@elsewhere.example", "--body", "relay me")
    assert done.returncode != 0
    assert "550 5.1.1" in done.stdout
    assert "354" not in done.stdout  # never got to DATA


@needs_swaks
def test_swaks_oversized_message_is_refused(hub_process: Hub, tmp_path: Path) -> None:
    hub_process.start()
    body = tmp_path / "big.txt"
    body.write_text(("unsubscribe " * 10 + "\n") * 300, encoding="ascii")  # ~36 kB > 20 kB
    done = hub_process.swaks(
        "--from", "dave@example.org", "--to", REPLIES, "--header", "Subject: unsubscribe", "--body", f"@{body}"
    )
    assert done.returncode != 0
    assert "552" in done.stdout
    assert not hub_process.status("dave@example.org")["suppressed"]


def test_crash_after_250_before_classification_still_opts_out(hub_process: Hub) -> None:
    hub_process.start(**{DELAY_ENV: "120"})  # classification waits; the message is stored
    code, reply = _smtplib_send(
        hub_process,
        message("Please unsubscribe me.", subject="Re: news", sender="erin@example.org"),
        REPLIES,
        mail_from="erin@example.org",
    )
    assert code == 250 and b"stored as" in reply
    hub_process.kill()  # SIGKILL: no clean-up, no chance to classify
    assert not hub_process.status("erin@example.org")["suppressed"]
    hub_process.start()  # no delay: pending rows are classified at start
    state = hub_process.wait_suppressed("erin@example.org")
    assert state["suppressed"], state
    assert len(state["events"]) == 1
    assert hub_process.stop() == 0


OLD_GIVE_UP_SECONDS = 30  # the classifier used to drop a failing batch after 5 tries, ~30 s


def _oldest_pending_gauge(hub: Hub) -> float:
    core = CoreHub.open(load_config(hub.config, env=hub.env), upgrade=False)
    try:
        text = core.metrics.render().decode()
    finally:
        core.close()
    match = re.search(r"^optout_inbound_oldest_pending_seconds ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def test_messages_acknowledged_during_an_outage_are_honoured_without_a_restart(hub_process: Hub) -> None:
    engine = make_engine(hub_process.database_url)
    hub_process.start()
    senders = [f"outage{n}@example.org" for n in range(5)]
    try:
        with events_refused(engine):  # the 250s still go through; classification fails
            for sender in senders:
                code, reply = _smtplib_send(
                    hub_process, message("STOP", subject="Re: news", sender=sender), REPLIES, mail_from=sender
                )
                assert code == 250 and b"stored as" in reply
            time.sleep(OLD_GIVE_UP_SECONDS + 5)
            assert not any(hub_process.status(sender)["suppressed"] for sender in senders)
            assert _oldest_pending_gauge(hub_process) >= OLD_GIVE_UP_SECONDS
    finally:
        engine.dispose()
    for sender in senders:  # retried every second at most (retry_max_seconds = 1.0)
        assert hub_process.wait_suppressed(sender, timeout=15)["suppressed"], sender
    assert _oldest_pending_gauge(hub_process) == 0
    assert hub_process.stop() == 0


class MixedLoad:
    """Client threads sending a mix of mail to the listener as fast as it answers: STOP
    replies from unique senders, mail to tokenized addresses, mail that asks nothing, relay
    attempts. It notes every unsubscribe answered ``250``; any other outcome (refused, cut
    off by a kill) is allowed."""

    def __init__(self, port: int, mailtos: dict[str, str], threads: int = 3) -> None:
        self.port = port
        self.mailtos = mailtos  # address -> its tokenized mailto
        self.acknowledged: set[str] = set()  # addresses whose unsubscribe got 250
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def __enter__(self) -> MixedLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        for i in itertools.count():
            if self._stop.is_set():
                return
            sender = f"load{n}-{i}@example.org"
            choice = rng.random()
            if choice < 0.5:  # a reply asking to stop: opts the sender out
                rcpt, subscriber, raw = REPLIES, sender, message("STOP", subject="Re: news", sender=sender)
            elif choice < 0.7:  # a List-Unsubscribe mailto: opts the token's recipient out
                subscriber, rcpt = rng.choice(sorted(self.mailtos.items()))
                raw = message("Unsubscribe", subject="Unsubscribe", sender=sender, to=rcpt)
            elif choice < 0.9:  # asks nothing
                rcpt, subscriber, raw = REPLIES, None, message("Thanks, see you Monday.", sender=sender)
            else:  # a relay attempt
                rcpt, subscriber, raw = "victim@elsewhere.example", None, message("relay me", sender=sender)
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
                    smtp.ehlo("client.example.org")
                    smtp.mail(sender)
                    if smtp.rcpt(rcpt)[0] != 250:
                        continue
                    code, _ = smtp.data(raw)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)  # down between a kill and the restart
                continue
            with self._lock:
                self.sent += 1
                if code == 250 and subscriber is not None:
                    self.acknowledged.add(subscriber)


def _suppressed(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(select(Suppression.email).where(Suppression.suppressed)))
    finally:
        engine.dispose()


def test_serve_killed_at_random_moments_under_load_honours_every_acknowledged_unsubscribe(
    hub_process: Hub,
) -> None:
    rng = random.Random(15)
    mailtos = {f"token{n}@example.com": hub_process.mailto(f"token{n}@example.com") for n in range(3)}
    hub_process.start("serve")
    with MixedLoad(hub_process.port, mailtos) as load:
        for _ in range(4):
            time.sleep(rng.uniform(0.5, 2.5))  # a random moment: mid-DATA, mid-commit, mid-classification
            hub_process.kill()
            hub_process.start("serve")
        time.sleep(1)
    assert load.sent > 20 and load.acknowledged
    deadline = time.monotonic() + 60
    while missing := load.acknowledged - _suppressed(hub_process.database_url):
        assert time.monotonic() < deadline, f"{len(missing)} acknowledged unsubscribe(s) not honoured: {missing}"
        time.sleep(0.5)
    assert hub_process.stop() == 0
