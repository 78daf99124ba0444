"""``DELETE /api/v1/subjects/<email>`` end to end (README "Erasure"): a person's opt-outs by
mail (the real SMTP listener), by SendGrid's signed webhook and by import, pushed to the fake
SendGrid by the real worker; erased over real HTTP; then every table of the database is
scanned for the address; then the same mail, webhook and import arrive again, and the address
stays suppressed without any of its old personal data coming back."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from adapters.config import Config
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store.erased import PSEUDONYM_PREFIX
from adapters.store.importer import import_csv
from adapters.store.models import Event
from adapters.worker.outbox import Worker
from inbound.listener import SMTPComponent
from tests.support.fake_providers import SENDGRID_KEY, FakeSendGrid
from tests.support.mail import DOMAIN, REPLIES, message
from tests.support.personal_data import traces
from tests.support.sendgrid import make_key, sign
from tests.support.servers import LiveServer
from tests.support.smtp_client import send, wait_classified
from webhooks import create_app

PERSON = "Zq7Erasee@Example.ORG"
OTHER = "keep.me@example.com"
OLD_WORDS = "the old history of a very particular person"
PRIVATE_KEY, PUBLIC_KEY = make_key()


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid()
    yield fake
    fake.close()
    assert fake.unexpected == []


@pytest.fixture
def erasing_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub], sendgrid: FakeSendGrid) -> Hub:
    config = make_config(
        {
            "smtp": {"port": 0, "domains": [DOMAIN]},
            "providers": {"sendgrid": {"enabled": True, "base_url": sendgrid.url}},
            "topics": [{"name": "newsletter", "sendgrid_group": 1234}],
        },
        env={
            "SENDGRID_API_KEY": SENDGRID_KEY,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC_KEY,
            "OPTOUT_HUB_ERASURE_KEY": "erasure-key-for-tests-0123456789",
        },
    )
    return make_hub(config)


@pytest.fixture
def smtp(erasing_hub: Hub) -> Iterator[SMTPComponent]:
    component = SMTPComponent(erasing_hub, port=0, dkim_dns=None)
    component.start()
    yield component
    component.stop()


def _reach(hub: Hub, smtp: SMTPComponent, url: str, *, words: str, delivery: str) -> None:
    """The person's STOP reply, SendGrid's signed unsubscribe (beside another person's) and an import."""
    reply = message(f"Please stop sending me these, {words}.", subject="Re: news", sender=f"Zq Erasee <{PERSON}>")
    wait_classified(hub, send(smtp, reply, rcpt=REPLIES, mail_from=PERSON))
    body = json.dumps(
        [
            {"email": PERSON, "timestamp": 1764000000, "event": "unsubscribe", "sg_event_id": f"{delivery}-1"},
            {"email": OTHER, "timestamp": 1764000000, "event": "unsubscribe", "sg_event_id": f"{delivery}-2"},
        ]
    ).encode()
    headers = {"Content-Type": "application/json", **sign(PRIVATE_KEY, body, "1764000000")}
    assert requests.post(f"{url}/webhooks/sendgrid", data=body, headers=headers, timeout=10).status_code == 200
    import_csv(hub, io.StringIO(f"email,note\n{PERSON.lower()},{words}\n"), origin="crm")


def _drain(hub: Hub) -> None:
    with requests.Session() as http:
        Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http).drain()


def test_erased_address_stays_suppressed_and_is_never_re_added(
    erasing_hub: Hub,
    smtp: SMTPComponent,
    sendgrid: FakeSendGrid,
    serve_app: Callable[[Any], LiveServer],
    admin_headers: dict[str, str],
) -> None:
    hub = erasing_hub
    url = serve_app(create_app(hub=hub)).url
    api = f"{url}/api/v1"
    _reach(hub, smtp, url, words=OLD_WORDS, delivery="first")
    assert requests.post(
        f"{api}/headers",
        json={"recipients": [{"email": PERSON, "campaign": "spring"}]},
        headers=admin_headers,
        timeout=10,
    ).ok
    assert traces(hub.engine, PERSON)

    subject = f"{api}/subjects/{PERSON}"
    assert requests.delete(subject, timeout=10).status_code == 401
    refused = requests.delete(subject, headers=admin_headers, timeout=10)
    assert refused.status_code == 409 and "pending" in refused.json()["error"]
    _drain(hub)
    assert PERSON.lower() in sendgrid.global_suppressions
    erased = requests.delete(subject, headers=admin_headers, timeout=10)
    assert erased.status_code == 200, erased.text
    result = erased.json()
    assert result["already_erased"] is False and result["removed"]["events"] == 3
    assert traces(hub.engine, PERSON) == []
    again = requests.delete(f"{api}/subjects/{PERSON.upper()}", headers=admin_headers, timeout=10).json()
    assert again["already_erased"] is True and again["address_hash"] == result["address_hash"]

    _reach(hub, smtp, url, words="written again later", delivery="first")  # SendGrid redelivers the same batch
    _drain(hub)
    check = requests.post(
        f"{api}/suppressions/check", json={"emails": [PERSON, "fresh@example.com"]}, headers=admin_headers, timeout=10
    )
    assert check.json()["suppressed"] == [PERSON]
    for category, status, answer in (("transactional", 200, []), ("newsletters", 400, None)):
        body = {"emails": [PERSON], "category": category}
        checked = requests.post(f"{api}/suppressions/check", json=body, headers=admin_headers, timeout=10)
        assert checked.status_code == status and checked.json().get("suppressed") == answer  # an unsubscribe: mailable
    state = requests.get(f"{api}/suppressions/{PERSON.lower()}", headers=admin_headers, timeout=10).json()
    assert state["suppressed"] and state["erased"] is True
    assert traces(hub.engine, OLD_WORDS) == []  # nothing of the old history came back
    with hub.sessions() as session:
        alias = PSEUDONYM_PREFIX + result["address_hash"]
        assert session.scalar(select(func.count()).select_from(Event).where(Event.email_key == alias)) == 3
    assert not sendgrid.calls_to("DELETE")  # no resubscribe ever left: SendGrid keeps the opt-out
    assert PERSON.lower() in sendgrid.global_suppressions
