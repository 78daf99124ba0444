"""``optout-hub doctor`` end to end, in a subprocess: the real app over HTTPS, a real DNS server,
the fake Mailchimp, a real database. Every check ok gives exit 0; each broken part is named on
its own line, and any error gives exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.config import Config
from adapters.hub import Hub
from tests.support.dns_server import DNSServer
from tests.support.environment import ADMIN_TOKEN, TEST_SECRET
from tests.support.fake_providers import MAILCHIMP_KEY, FakeMailchimp
from tests.support.tls import TLSServer, self_signed
from webhooks import create_app

DOMAIN = "unsub.example.com"
ZONE = {
    (DOMAIN, "MX"): ["10 mx.example.com."],
    ("example.com", "TXT"): ['"v=spf1 include:_spf.example.net -all"'],
    ("_dmarc.example.com", "TXT"): ['"v=DMARC1; p=reject"'],
    ("s1._domainkey.example.com", "TXT"): ['"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC"'],
    ("s2._domainkey.example.com", "TXT"): ['"v=DKIM1; k=rsa; p="'],  # revoked
}


@pytest.fixture
def dns_server() -> Iterator[DNSServer]:
    server = DNSServer(ZONE)
    yield server
    server.close()


@pytest.fixture
def mailchimp() -> Iterator[FakeMailchimp]:
    fake = FakeMailchimp()
    yield fake
    fake.close()


def doctor(config: Path, env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    result = subprocess.run(
        [sys.executable, "-m", "adapters", "--config", str(config), "doctor", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_HUB")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stderr == ""
    return result.returncode, result.stdout.splitlines()


def test_a_sound_configuration_is_all_ok(
    tmp_path: Path,
    database_url: str,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    dns_server: DNSServer,
    mailchimp: FakeMailchimp,
) -> None:
    certificate, key = self_signed(tmp_path)
    https = TLSServer(create_app(hub=make_hub(make_config())), certificate, key)  # also `db upgrade`
    try:
        config = tmp_path / "optout-hub.toml"
        config.write_text(
            f'[database]\nurl = "{database_url}"\n'
            f'[smtp]\ndomains = ["{DOMAIN}"]\nmax_message_bytes = 10240000\n'
            f'[http]\npublic_url = "{https.url}"\n'
            f'[providers.mailchimp]\nenabled = true\nlists = ["list1"]\nbase_url = "{mailchimp.url}"\n'
        )
        env = {
            "OPTOUT_HUB_SECRET": TEST_SECRET,
            "OPTOUT_HUB_ADMIN_TOKEN": ADMIN_TOKEN,
            "MAILCHIMP_API_KEY": MAILCHIMP_KEY,
            "MAILCHIMP_WEBHOOK_SECRET": "s" * 24,
            "REQUESTS_CA_BUNDLE": str(certificate),  # the operator's trust store, here our own CA
        }
        status, lines = doctor(config, env, "--nameserver", dns_server.address, "--sending-domain", "example.com:s1")
    finally:
        https.close()
    assert status == 0, lines
    assert all(line.startswith("ok ") for line in lines), lines
    checks = {line.split(":", 1)[0].removeprefix("ok").strip() for line in lines}
    assert checks >= {
        "database",
        "public_url",
        "public_url reachable",
        "clock",
        "token secret",
        "admin token",
        f"MX {DOMAIN}",
        "smtp.max_message_bytes",
        "DKIM s1._domainkey.example.com",
        "SPF example.com",
        "DMARC example.com",
        "provider mailchimp",
    }, lines
    assert mailchimp.unexpected == []


def test_each_broken_part_is_named_and_the_exit_status_is_1(
    tmp_path: Path, database_url: str, dns_server: DNSServer, mailchimp: FakeMailchimp
) -> None:
    config = tmp_path / "optout-hub.toml"
    config.write_text(  # the schema was never created; public_url is plain HTTP and answers nothing
        f'[database]\nurl = "{database_url}"\n'
        f'[smtp]\ndomains = ["{DOMAIN}", "nomx.example.org"]\n'
        '[http]\npublic_url = "http://127.0.0.1:9"\n'
        f'[providers.mailchimp]\nenabled = true\nlists = ["list1"]\nbase_url = "{mailchimp.url}"\n'
    )
    env = {"MAILCHIMP_API_KEY": "00000000000000000000000000000000-us6", "MAILCHIMP_WEBHOOK_SECRET": "s" * 24}
    status, lines = doctor(config, env, "--nameserver", dns_server.address, "--sending-domain", "example.com:s2")
    assert status == 1
    by_check = {line.split(":", 1)[0].split(None, 1)[1]: line.split(None, 1)[0] for line in lines}
    database_clock = {"clock": "ok"} if database_url.startswith("postgresql") else {}  # SQLite has none
    assert by_check == database_clock | {
        "database": "error",  # schema at nothing
        "public_url": "error",  # not HTTPS
        "public_url reachable": "warning",
        "token secret": "warning",
        "admin token": "warning",
        f"MX {DOMAIN}": "ok",
        "MX nomx.example.org": "error",
        "smtp.max_message_bytes": "warning",  # below Postfix's default
        "DKIM s2._domainkey.example.com": "error",  # revoked key
        "SPF example.com": "ok",
        "DMARC example.com": "ok",
        "provider mailchimp": "error",  # the fake refuses this key
    }, lines
    assert any("Gmail and Yahoo ignore one-click" in line for line in lines)


def test_dns_that_does_not_answer_is_a_warning_not_a_verdict(tmp_path: Path, database_url: str) -> None:
    config = tmp_path / "optout-hub.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[smtp]\ndomains = ["{DOMAIN}"]\n')
    _, lines = doctor(config, {}, "--nameserver", "127.0.0.1:9", "--sending-domain", "example.com:s1")
    dns_lines = [line for line in lines if "DNS did not answer" in line]
    assert len(dns_lines) == 4 and all(line.startswith("warning") for line in dns_lines), lines
