"""Mixed load on a running ``optout-hub serve`` (:class:`HubProcess`), for the crash and outage
tests: client threads sending, as fast as the hub answers, every kind of request that opts
someone out — mail (STOP replies, mail to ``List-Unsubscribe`` mailto addresses), signed
provider webhooks (Mailchimp, SendGrid), RFC 8058 one-click POSTs and
``POST /api/v1/suppressions`` — among mail that asks nothing and relay attempts. Every
request and its outcome is noted with its times, so a test can tell what was acknowledged,
when, and check that each acknowledged opt-out ends honoured in the store and pushed to every
provider but the one it came from.

The hub runs with the three providers enabled at :class:`FakeProviders` (see
:func:`provider_tables`) and the admin token of :data:`ADMIN_TOKEN`.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import random
import re
import smtplib
import threading
import time
import uuid
from urllib.parse import urlencode

import requests

from tests.support.environment import ADMIN_TOKEN
from tests.support.fake_providers import FakeProviders, provider_env_vars
from tests.support.hub_process import HubProcess
from tests.support.mail import REPLIES, message
from tests.support.sendgrid import make_key, sign

MAILCHIMP_SECRET = "mc-webhook-secret-for-the-load-0f3e"
SENDGRID_KEY, SENDGRID_PUBLIC_KEY = make_key()
PROVIDERS = ("mailchimp", "sendgrid", "hubspot")

# Outcomes of one request
ACKNOWLEDGED = "acknowledged"  # 250 / 2xx: the hub says it has the data
ANSWERED = "answered"  # a final answer that stores nothing: a relay attempt's 550
REFUSED = "refused"  # 451 / 421 / 503 with Retry-After: try again later
FAILED = "5xx other than 503"  # a 5xx that is not a proper 503 (or a 5xx to SMTP that is not 451/421/550)
CLIENT_ERROR = "4xx"  # the hub refused a valid request
NO_ANSWER = "no answer"  # the connection failed or timed out (the process was killed)


def provider_tables(fakes: FakeProviders) -> tuple[str, dict[str, str]]:
    """The TOML tables enabling the providers at ``fakes`` and their webhooks, and the
    environment holding the secrets those tables name."""
    tables = f"""
[security]
admin_token_env = "OPTOUT_HUB_ADMIN_TOKEN"

[providers.mailchimp]
enabled = true
base_url = "{fakes.url("mailchimp")}"
lists = ["list1", "list2"]

[providers.sendgrid]
enabled = true
base_url = "{fakes.url("sendgrid")}"

[providers.hubspot]
enabled = true
base_url = "{fakes.url("hubspot")}"
subscription_ids = ["5678"]
client_secret_env = ""
"""
    env = {
        **provider_env_vars(),
        "OPTOUT_HUB_ADMIN_TOKEN": ADMIN_TOKEN,
        "MAILCHIMP_WEBHOOK_SECRET": MAILCHIMP_SECRET,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": SENDGRID_PUBLIC_KEY,
    }
    return tables, env


@dataclasses.dataclass(frozen=True)
class Recipient:
    """An address the hub issued headers for: its one-click URL and its mailto address."""

    email: str
    one_click: str
    mailto: str


def issue_recipients(hub: HubProcess, count: int) -> list[Recipient]:
    """Issue ``List-Unsubscribe`` headers for ``count`` new addresses through the API."""
    answer = requests.post(
        f"{hub.http_url}/api/v1/headers",
        json={"recipients": [{"email": f"recipient{n}@example.com"} for n in range(count)]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    answer.raise_for_status()
    issued = []
    for item in answer.json()["headers"]:
        url = re.search(r"<(https?://[^>]+)>", item["List-Unsubscribe"])
        mailto = re.search(r"<mailto:([^>]+)>", item["List-Unsubscribe"])
        assert url and mailto, item
        issued.append(Recipient(item["email"], url.group(1), mailto.group(1)))
    return issued


@dataclasses.dataclass(frozen=True)
class Attempt:
    channel: str
    address: str | None  # whom it opts out (None: mail that asks nothing, a relay attempt)
    outcome: str
    status: int | None
    started: float  # time.monotonic()
    ended: float


def _http_outcome(answer: requests.Response) -> str:
    if answer.status_code < 300:
        return ACKNOWLEDGED
    if answer.status_code == 503 and answer.headers.get("Retry-After"):
        return REFUSED
    return FAILED if answer.status_code >= 500 else CLIENT_ERROR


def _smtp_outcome(code: int) -> str:
    if code == 250:
        return ACKNOWLEDGED
    if code in (421, 451):
        return REFUSED
    return ANSWERED if code == 550 else FAILED


class MixedLoad:
    """``threads`` client threads sending mixed requests to ``hub`` until the block ends."""

    def __init__(self, hub: HubProcess, recipients: list[Recipient], *, threads: int = 4, pause: float = 0.01) -> None:
        self.hub = hub
        self.pause = pause
        self.attempts: list[Attempt] = []
        self._recipients = collections.deque(recipients)  # each one-click / mailto used until acknowledged
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
            thread.join(timeout=60)

    # What was sent and answered -------------------------------------------------------------

    def count(self, outcome: str) -> int:
        return sum(a.outcome == outcome for a in self.attempts)

    def acknowledged(self, before: float = float("inf")) -> dict[str, str]:
        """Each address an acknowledged request opts out, and the channel that sent it (only
        requests answered before the monotonic time ``before``)."""
        with self._lock:
            attempts = list(self.attempts)
        return {a.address: a.channel for a in attempts if a.outcome == ACKNOWLEDGED and a.address and a.ended < before}

    def unsettled(self, fakes: FakeProviders, before: float = float("inf")) -> tuple[set[str], set[tuple[str, str]]]:
        """The addresses acknowledged (before ``before``) that the store does not hold opted
        out, and the (address, provider) pairs not pushed yet: every provider holds a global
        opt-out, except the one whose webhook sent it (no echo)."""
        acknowledged = self.acknowledged(before)
        not_stored = set(acknowledged) - self.hub.suppressed()
        held = {slug: fakes.globally_suppressed(slug) for slug in PROVIDERS}
        not_pushed = {
            (address, slug)
            for address, channel in acknowledged.items()
            for slug in PROVIDERS
            if slug != channel and address.lower() not in held[slug]
        }
        return not_stored, not_pushed

    # The clients --------------------------------------------------------------------------

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        http = requests.Session()
        for i in itertools.count():
            if self._stop.is_set():
                http.close()
                return
            unique = f"load{n}-{i}-{uuid.uuid4().hex[:6]}@example.org"
            channel = rng.choices(
                ["stop", "mailto", "nothing", "relay", "mailchimp", "sendgrid", "one-click", "api"],
                weights=[20, 5, 5, 3, 15, 15, 15, 15],
            )[0]
            recipient = None
            if channel in ("mailto", "one-click"):
                with self._lock:
                    recipient = self._recipients.popleft() if self._recipients else None
                if recipient is None:
                    channel = "stop"
            started = time.monotonic()
            if recipient is not None:
                address: str | None = recipient.email
            else:
                address = unique if channel in ("stop", "mailchimp", "sendgrid", "api") else None
            try:
                outcome, status = self._send(channel, unique, recipient, http)
            except (OSError, smtplib.SMTPException, requests.RequestException):
                outcome, status = NO_ANSWER, None
            with self._lock:
                self.attempts.append(Attempt(channel, address, outcome, status, started, time.monotonic()))
                if recipient is not None and outcome != ACKNOWLEDGED:
                    self._recipients.append(recipient)
            if outcome == NO_ANSWER:
                time.sleep(0.05)  # down between a kill and the restart
            time.sleep(self.pause)

    def _send(
        self, channel: str, who: str, recipient: Recipient | None, http: requests.Session
    ) -> tuple[str, int | None]:
        """Send one request of ``channel`` from or for the unique address ``who`` (or for
        ``recipient``); its outcome and status."""
        url = self.hub.http_url
        if recipient is not None:
            if channel == "mailto":
                return self._mail(who, recipient.mailto, "Unsubscribe")
            answer = http.post(recipient.one_click, data={"List-Unsubscribe": "One-Click"}, timeout=20)
        elif channel == "stop":
            return self._mail(who, REPLIES, "STOP")
        elif channel == "nothing":
            return self._mail(who, REPLIES, "Thanks, see you Monday.")
        elif channel == "relay":
            return self._mail(who, "victim@elsewhere.example", "relay me")
        elif channel == "mailchimp":
            fields = {
                "type": "unsubscribe",
                "fired_at": "2026-11-24 11:59:00",
                "data[action]": "unsub",
                "data[reason]": "manual",
                "data[list_id]": "list2",
                "data[email]": who,
            }
            answer = http.post(
                f"{url}/webhooks/mailchimp/{MAILCHIMP_SECRET}",
                data=urlencode(fields),
                headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "MailChimp"},
                timeout=20,
            )
        elif channel == "sendgrid":
            event = {"email": who, "timestamp": int(time.time()), "event": "unsubscribe", "sg_event_id": who}
            body = f"[{json.dumps(event)}]\r\n".encode()
            headers = {"Content-Type": "application/json", **sign(SENDGRID_KEY, body, str(int(time.time())))}
            answer = http.post(f"{url}/webhooks/sendgrid", data=body, headers=headers, timeout=20)
        else:  # api
            answer = http.post(
                f"{url}/api/v1/suppressions",
                json={"email": who, "reason": "asked on the phone"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=20,
            )
        return _http_outcome(answer), answer.status_code

    def _mail(self, sender: str, rcpt: str, text: str) -> tuple[str, int | None]:
        with smtplib.SMTP("127.0.0.1", self.hub.port, timeout=20) as smtp:
            smtp.ehlo("client.example.org")
            smtp.mail(sender)
            code, _ = smtp.rcpt(rcpt)
            if code != 250:
                return _smtp_outcome(code), code
            code, _ = smtp.data(message(text, subject="Re: news", sender=sender, to=rcpt))
        return _smtp_outcome(code), code
