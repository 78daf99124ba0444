"""The audit: one address's history with events from SMTP, one-click, two providers and an
admin, pushed by the real worker to the fake providers, read through the CLI and over real
HTTP; then a period's signed CSV export, verified, and refused once either file is altered."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from adapters.cli import main
from adapters.config import Config
from adapters.errors import ConfigError
from adapters.events import Kind, OptOutEvent, Source
from adapters.hub import Hub
from adapters.providers import make_clients
from adapters.store import audit
from adapters.store.models import Evidence
from adapters.store.recipients import RecipientRequest, issue_tokens
from adapters.store.record import record_events
from adapters.worker.outbox import Worker
from inbound.listener import SMTPComponent
from tests.support.clock import Clock
from tests.support.environment import ADMIN_TOKEN, TEST_SECRET
from tests.support.fake_providers import FakeProviders, provider_env_vars
from tests.support.mail import message
from tests.support.sendgrid import make_key, sign
from tests.support.servers import LiveServer
from tests.support.smtp_client import send, wait_classified
from webhooks import create_app

ADDRESS = "Pat@example.com"
MAIL = message("Please unsubscribe me.", subject="Re: spring news", sender=f"Pat <{ADDRESS}>")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def raw_key(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()


def drain(hub: Hub) -> None:
    with requests.Session() as http:
        Worker(hub, make_clients(hub.config, http, now=hub.clock), http=http).drain()


def record_with_evidence(hub: Hub, event: OptOutEvent, channel: str, content: bytes, content_type: str) -> None:
    now = hub.clock()
    evidence = Evidence(
        channel=channel, source=event.source.value, received_at=now, content=content, content_type=content_type
    )
    hub.record_with(lambda s: record_events(s, [event], hub.policy, now=now, evidence=evidence))


SENDGRID_KEY, SENDGRID_PUBLIC_KEY = make_key()
MAILCHIMP_SECRET = "mc-webhook-secret-5e1d7a90c3"


def build_history(hub: Hub, clock: Clock, url: str) -> None:
    """Every event through its real entry point: a STOP reply to the SMTP listener at 0
    (pushed and confirmed at 10), SendGrid's signed webhook at 20 and Mailchimp's at 30
    (already opted out: nothing to push), an admin's API call at 40, a one-click opt-out of
    the newsletter at 50 (pushed and confirmed at 60)."""
    smtp = SMTPComponent(hub, port=0, dkim_dns=None)
    smtp.start()
    try:
        evidence_id = send(smtp, MAIL, mail_from=ADDRESS)
        assert wait_classified(hub, evidence_id).state == "done"
    finally:
        smtp.stop()
    clock.advance(10)
    drain(hub)
    clock.advance(10)
    body = json.dumps([{"email": ADDRESS, "timestamp": 1764000000, "event": "unsubscribe", "sg_event_id": "sg-1"}])
    headers = {"Content-Type": "application/json", **sign(SENDGRID_KEY, body.encode(), "1764000000")}
    assert requests.post(f"{url}/webhooks/sendgrid", data=body, headers=headers, timeout=10).status_code == 200
    clock.advance(10)
    form = {"type": "unsubscribe", "fired_at": "2026-11-24 12:00:30", "data[action]": "unsub"}
    form.update({"data[reason]": "abuse", "data[list_id]": "list2", "data[email]": ADDRESS})
    r = requests.post(f"{url}/webhooks/mailchimp/{MAILCHIMP_SECRET}", data=form, timeout=10)
    assert r.status_code == 200
    clock.advance(10)
    r = requests.post(
        f"{url}/api/v1/suppressions",
        json={"email": ADDRESS, "reason": "asked by phone", "admin": "alice"},
        headers=AUTH,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    clock.advance(10)
    with hub.sessions.begin() as session:
        (issued,) = issue_tokens(
            session, hub.signer, hub.config, [RecipientRequest(ADDRESS, "newsletter", "spring")], now=clock.now
        )
    r = requests.post(
        f"{url}/u/{issued.token}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    clock.advance(10)
    drain(hub)


@pytest.fixture
def audited(
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    fake_providers: FakeProviders,
    serve_app: Callable[[Any], LiveServer],
    clock: Clock,
) -> tuple[Hub, str]:
    config = {
        "providers": {
            "mailchimp": {"enabled": True, "base_url": fake_providers.url("mailchimp"), "lists": ["list1", "list2"]},
            "sendgrid": {"enabled": True, "base_url": fake_providers.url("sendgrid")},
        },
        "topics": [{"name": "newsletter", "mailchimp_list": "list1", "sendgrid_group": 1234}],
    }
    env = {
        **provider_env_vars(),
        "MAILCHIMP_WEBHOOK_SECRET": MAILCHIMP_SECRET,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": SENDGRID_PUBLIC_KEY,
    }
    hub = make_hub(make_config(config, env=env))
    url = serve_app(create_app(hub=hub)).url
    build_history(hub, clock, url)
    return hub, url


def test_history_of_an_address_over_http_and_from_the_cli(
    audited: tuple[Hub, str],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = audited
    assert requests.get(f"{url}/api/v1/audit/{ADDRESS}", timeout=10).status_code == 401
    r = requests.get(f"{url}/api/v1/audit/pat@EXAMPLE.com", headers=AUTH, timeout=10)
    assert r.status_code == 200
    history = r.json()
    assert history["email"] == ADDRESS
    events = history["events"]
    assert [(e["source"], e["kind"], e["scope"], e["actor"]) for e in events] == [
        ("smtp", "unsubscribe", "global", "person"),
        ("sendgrid", "unsubscribe", "global", "automation"),
        ("mailchimp", "complaint", "global", "automation"),
        ("api", "unsubscribe", "global", "admin"),
        ("oneclick", "unsubscribe", "topic:newsletter", "person"),
    ]
    smtp, sendgrid, mailchimp, admin, oneclick = events
    assert (smtp["verification"], smtp["received_at"]) == ("none", "2026-11-24T12:00:00+00:00")  # no DKIM
    assert smtp["evidence"]["text"] == MAIL.decode()
    assert smtp["evidence"]["sha256"] == hashlib.sha256(MAIL).hexdigest()
    assert (smtp["evidence"]["size"], smtp["evidence"]["truncated"]) == (len(MAIL), False)
    assert [(p["provider"], p["state"], p["confirmed_at"]) for p in smtp["pushes"]] == [
        ("mailchimp", "done", "2026-11-24T12:00:10+00:00"),
        ("sendgrid", "done", "2026-11-24T12:00:10+00:00"),
    ]
    assert (sendgrid["provider_event_id"], sendgrid["pushes"]) == ("sg-1", [])
    assert (mailchimp["reason"], mailchimp["evidence"]["content_type"]) == (
        "abuse",
        "application/x-www-form-urlencoded",
    )
    assert json.loads(sendgrid["evidence"]["text"])[0]["sg_event_id"] == "sg-1"
    assert (admin["admin"], admin["reason"], admin["verification"]) == ("alice", "asked by phone", "none")
    assert json.loads(admin["evidence"]["text"])["admin"] == "alice"
    assert (oneclick["verification"], oneclick["campaign"]) == ("token", "spring")
    assert [(p["provider"], p["attempts"], p["confirmed_at"]) for p in oneclick["pushes"]] == [
        ("mailchimp", 1, "2026-11-24T12:01:00+00:00"),
        ("sendgrid", 1, "2026-11-24T12:01:00+00:00"),
    ]
    # the evidence link returns the stored bytes whole, as a download
    whole = requests.get(f"{url}{smtp['evidence']['url']}", headers=AUTH, timeout=10)
    assert (whole.status_code, whole.content, whole.headers["Content-Type"]) == (
        200,
        MAIL,
        "application/octet-stream",
    )
    assert requests.get(f"{url}/admin/evidence/999999", headers=AUTH, timeout=10).status_code == 404
    # an address never seen: 200 and no events; not an address: 400
    unknown = requests.get(f"{url}/api/v1/audit/nobody@example.com", headers=AUTH, timeout=10)
    assert (unknown.status_code, unknown.json()) == (200, {"email": "nobody@example.com", "events": []})
    assert requests.get(f"{url}/api/v1/audit/not-an-address", headers=AUTH, timeout=10).status_code == 400

    config = tmp_path / "optout-hub.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n')
    monkeypatch.setenv("OPTOUT_HUB_SECRET", TEST_SECRET)
    assert main(["audit", ADDRESS, "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == history


def test_evidence_is_inline_up_to_a_bound(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]
) -> None:
    hub = make_hub(make_config())
    big = b"\xff" + b"x" * audit.EVIDENCE_INLINE_BYTES
    record_with_evidence(
        hub, OptOutEvent(email="big@example.com", kind=Kind.UNSUBSCRIBE, source=Source.SMTP), "smtp", big, "x"
    )
    with hub.sessions() as session:
        (event,) = audit.address_history(session, "big@example.com")["events"]
    evidence = event["evidence"]
    assert (evidence["size"], evidence["truncated"]) == (len(big), True)
    assert base64.b64decode(evidence["base64"]) == big[: audit.EVIDENCE_INLINE_BYTES]  # not UTF-8: base64


def test_signed_period_export_and_verify(
    audited: tuple[Hub, str],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = Ed25519PrivateKey.generate()
    config = tmp_path / "optout-hub.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n')
    monkeypatch.setenv("OPTOUT_HUB_SECRET", TEST_SECRET)
    monkeypatch.setenv("OPTOUT_HUB_AUDIT_SIGNING_KEY", raw_key(key))
    monkeypatch.setattr(audit, "STREAM_ROWS", 2)  # fetched a few rows at a time, as for a year of events
    cfg = ["--config", str(config)]
    export = tmp_path / "audit.csv"
    signature = tmp_path / "audit.csv.sig"

    # the period: from the SendGrid webhook (at 20 s) to before the one-click (at 50 s)
    period = ["--since", "2026-11-24T12:00:20", "--until", "2026-11-24T12:00:50+00:00"]
    assert main(["audit", *period, "--format", "csv", "--output", str(export), *cfg]) == 0
    assert capsys.readouterr().out == f"audit: wrote {export} and its signature {signature}\n"
    rows = list(csv.DictReader(io.StringIO(export.read_text())))
    assert [(r["source"], r["kind"], r["actor"], r["admin"]) for r in rows] == [
        ("sendgrid", "unsubscribe", "automation", ""),
        ("mailchimp", "complaint", "automation", ""),
        ("api", "unsubscribe", "admin", "alice"),
    ]
    assert rows[0]["email"] == ADDRESS and len(rows[0]["evidence_sha256"]) == 64

    full = ["--since", "2026-11-24T00:00:00Z", "--until", "2026-11-25T00:00:00Z"]
    assert main(["audit", *full, "--format", "csv", "--output", str(export), *cfg]) == 0
    rows = list(csv.DictReader(io.StringIO(export.read_text())))
    assert len(rows) == 5
    assert rows[0]["pushes"] == "mailchimp:done:1:2026-11-24T12:00:10+00:00;sendgrid:done:1:2026-11-24T12:00:10+00:00"

    capsys.readouterr()
    assert main(["audit", *full, "--format", "csv", *cfg]) == 0  # to standard output, unsigned
    unsigned = capsys.readouterr()
    assert unsigned.out == export.read_text()
    assert unsigned.err == "audit: no --output FILE: the export is not signed\n"
    assert main(["audit", "--format", "csv", *cfg]) == 1
    assert capsys.readouterr().err == "error: audit --format csv needs --since and --until\n"
    assert main(["audit", "verify", str(export), str(signature), *cfg]) == 0
    assert main(["audit", "public-key", *cfg]) == 0
    public = capsys.readouterr().out.splitlines()[-1]
    # an auditor without the private key
    monkeypatch.delenv("OPTOUT_HUB_AUDIT_SIGNING_KEY")
    assert main(["audit", "verify", str(export), str(signature), "--public-key", public, *cfg]) == 0
    capsys.readouterr()

    original, sig_text = export.read_bytes(), signature.read_text()
    export.write_bytes(original.replace(b"alice", b"alicf"))  # one character of the export
    assert main(["audit", "verify", str(export), str(signature), "--public-key", public, *cfg]) == 1
    assert capsys.readouterr().err == (
        "verify: the export was altered: its size or SHA-256 differs from the signed one\n"
    )
    export.write_bytes(original + b"\n")  # a line added
    assert main(["audit", "verify", str(export), str(signature), "--public-key", public, *cfg]) == 1
    export.write_bytes(original)
    tampered_digest = hashlib.sha256(original.replace(b"alice", b"alicf")).hexdigest()
    sha_line = next(line for line in sig_text.splitlines() if line.startswith("sha256: "))
    signature.write_text(sig_text.replace(sha_line, f"sha256: {tampered_digest}"))  # signed digest swapped
    capsys.readouterr()
    assert main(["audit", "verify", str(export), str(signature), "--public-key", public, *cfg]) == 1
    assert capsys.readouterr().err == "verify: the signature file was altered, or not signed with this key\n"
    signature.write_text(sig_text)
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    assert main(["audit", "verify", str(export), str(signature), "--public-key", other, *cfg]) == 1
    assert main(["audit", "verify", str(export), str(signature), "--public-key", public, *cfg]) == 0

    # no signing key: the signed export is refused before anything is written
    export.unlink()
    assert main(["audit", *full, "--format", "csv", "--output", str(export), *cfg]) == 2
    assert "security.audit_signing_key_env" in capsys.readouterr().err and not export.exists()


def test_a_bad_signing_key_is_a_config_error(make_config: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match=r"security\.audit_signing_key_env"):
        make_config(env={"OPTOUT_HUB_AUDIT_SIGNING_KEY": base64.b64encode(b"short").decode()})
