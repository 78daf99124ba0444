"""Configuration: defaults, the example file, and every error path (one line naming the key)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from adapters.config import Config, Secret, load_config, parse_config
from adapters.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_contract() -> None:
    config = load_config(None, {})
    assert config.database.url == "sqlite:///optout-hub.db"
    assert (config.smtp.host, config.smtp.port) == ("127.0.0.1", 2525)
    assert config.smtp.domains == ("unsubscribe.example.com",)
    assert config.smtp.max_message_bytes == 1_048_576
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8025)
    assert config.http.public_url == "https://unsubscribe.example.com"
    assert config.security.token_secret_env == "OPTOUT_HUB_SECRET"
    assert config.security.admin_token_env == "OPTOUT_HUB_ADMIN_TOKEN"
    assert config.providers.enabled() == ()
    assert config.topics == ()
    assert config.security.token_secret is None and config.security.admin_token is None


def test_example_file_documents_every_key_and_loads() -> None:
    env = {"OPTOUT_HUB_SECRET": "s" * 32, "OPTOUT_HUB_ADMIN_TOKEN": "admin", "OPTOUT_HUB_ERASURE_KEY": "e" * 32}
    config = load_config(ROOT / "config.example.toml", env)
    assert config.security.token_secret == Secret("s" * 32)
    text = (ROOT / "config.example.toml").read_text()
    sections = {
        "database": Config().database,
        "smtp": Config().smtp,
        "http": Config().http,
        "security": Config().security,
        "inbound": Config().inbound,
        "worker": Config().worker,
        "confirmations": Config().confirmations,
        "logging": Config().logging,
        "retention": Config().retention,
        "compliance": Config().compliance,
        "providers.mailchimp": Config().providers.mailchimp,
        "providers.sendgrid": Config().providers.sendgrid,
        "providers.hubspot": Config().providers.hubspot,
    }
    import dataclasses

    for section, obj in sections.items():
        assert f"[{section}]" in text
        names = [field.name for field in dataclasses.fields(obj)]
        for name in names:
            if f"{name}_env" not in names:  # not a resolved secret: a key of the file
                assert f"{name} =" in text, f"{section}.{name} is not documented"
    lines = text.splitlines()
    for before, line in zip(["#", *lines], lines, strict=False):
        if re.match(r"[a-z_]+ *=", line):  # a key: a comment on its line or just above it
            assert "#" in line or before.lstrip().startswith("#"), f"no comment for: {line}"


def test_env_and_path_lookup(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[smtp]\nport = 2600\n")
    assert load_config(None, {"OPTOUT_HUB_CONFIG": str(path)}).smtp.port == 2600
    assert load_config(path, {}).smtp.port == 2600


def test_secrets_resolve_and_never_show() -> None:
    config = parse_config(
        {"security": {"token_secret_env": "S", "admin_token_env": "A", "previous_token_secrets_env": ["OLD"]}},
        {"S": "x" * 20, "A": "adm1n-value", "OLD": "y" * 20},
    )
    assert config.security.token_secret.reveal() == "x" * 20
    assert [s.reveal() for s in config.security.previous_token_secrets] == ["y" * 20]
    assert (
        "adm1n-value" not in repr(config)
        and "x" * 20 not in repr(config)
        and "adm1n-value" not in str(config.security.admin_token)
    )


def test_topics_and_enabled_providers() -> None:
    env = {"SENDGRID_API_KEY": "k", "SENDGRID_WEBHOOK_PUBLIC_KEY": "p"}
    config = parse_config(
        {"providers": {"sendgrid": {"enabled": True}}, "topics": [{"name": "news", "sendgrid_group": 12}]}, env
    )
    assert config.providers.enabled() == ("sendgrid",)
    assert config.topic("news").sendgrid_group == 12
    assert config.topic("other") is None


@pytest.mark.parametrize(
    ("data", "env", "key", "message"),
    [
        ({"smtp": {"bogus": 1}}, {}, "smtp.bogus", "unknown key"),
        ({"bogus": {}}, {}, "bogus", "unknown key"),
        ({"providers": {"postmark": {}}}, {}, "providers.postmark", "unknown provider"),
        ({"providers": {"sendgrid": {"colour": "red"}}}, {}, "providers.sendgrid.colour", "unknown key"),
        ({"smtp": {"port": "25"}}, {}, "smtp.port", "must be an integer"),
        ({"smtp": {"port": True}}, {}, "smtp.port", "must be an integer"),
        ({"smtp": {"port": 70000}}, {}, "smtp.port", "between 0 and 65535"),
        ({"smtp": {"domains": "a.example"}}, {}, "smtp.domains", "must be a list"),
        ({"smtp": {"domains": [1]}}, {}, "smtp.domains[0]", "must be a string"),
        ({"smtp": {"domains": []}}, {}, "smtp.domains", "at least one domain"),
        ({"smtp": {"domains": ["a.example", "localhost"]}}, {}, "smtp.domains[1]", "not a mail domain"),
        ({"smtp": 3}, {}, "smtp", "must be a table"),
        ({"http": {"public_url": "unsubscribe.example.com"}}, {}, "http.public_url", "http(s) URL"),
        ({"worker": {"enabled": "yes"}}, {}, "worker.enabled", "must be a boolean"),
        ({"security": {"token_secret_env": "MY_SECRET"}}, {}, "security.token_secret_env", "MY_SECRET is not set"),
        (
            {"security": {"token_secret_env": "MY_SECRET"}},
            {"MY_SECRET": "short"},
            "security.token_secret_env",
            "at least 16 bytes",
        ),
        (
            {"providers": {"sendgrid": {"enabled": True}}},
            {},
            "providers.sendgrid.api_key_env",
            "SENDGRID_API_KEY is not set",
        ),
        (
            {"providers": {"hubspot": {"enabled": True}}},
            {"HUBSPOT_ACCESS_TOKEN": "t"},
            "providers.hubspot.client_secret_env",
            "HUBSPOT_CLIENT_SECRET is not set",
        ),
        ({"topics": [{"name": "n", "sendgrid_group": 3}]}, {}, "topics[0].sendgrid_group", "not enabled"),
        ({"topics": [{"name": "n", "colour": 3}]}, {}, "topics[0].colour", "unknown key"),
        ({"topics": [{"title": "x"}]}, {}, "topics[0].name", "missing"),
        ({"topics": [{"name": "n"}, {"name": "n"}]}, {}, "topics[1].name", "duplicate"),
        ({"topics": [{"name": "a b"}]}, {}, "topics[0].name", "letters, digits"),
        ({"topics": {"name": "n"}}, {}, "topics", "array of tables"),
        ({"database": {"url_env": "DB_URL"}}, {}, "database.url_env", "DB_URL is not set"),
        (
            {"confirmations": {"smtp_host": "relay.example.net", "username_env": "U", "password_env": "P"}},
            {"U": "user", "P": "pass"},
            "confirmations.starttls",
            "only over TLS",
        ),
        ({"database": {"url_env": ""}}, {}, "database.url_env", "must name an environment variable"),
        (
            {"database": {"url": "sqlite://", "url_env": "DB_URL"}},
            {"DB_URL": "sqlite://"},
            "database.url_env",
            "not both",
        ),
        (
            {"consent": {"provider_resubscribes": ["sendgrid", "crm"]}},
            {},
            "consent.provider_resubscribes[1]",
            "unknown provider 'crm'",
        ),
        ({"admins": {"name": "a"}}, {}, "admins", "array of tables"),
        ({"admins": [{"token_env": "A"}]}, {"A": "a" * 20}, "admins[0].name", "missing"),
        ({"admins": [{"name": "Dana"}]}, {}, "admins[0].token_env", "missing"),
        ({"admins": [{"name": "Dana", "token_env": "A"}]}, {}, "admins[0].token_env", "A is not set"),
        ({"admins": [{"name": "Dana", "token_env": "A", "role": "x"}]}, {"A": "t"}, "admins[0].role", "unknown key"),
        ({"admins": [{"name": " ", "token_env": "A"}]}, {"A": "t"}, "admins[0].name", "1 to 200 characters"),
        (
            {"admins": [{"name": "Dana", "token_env": "A"}, {"name": "Dana", "token_env": "B"}]},
            {"A": "t1", "B": "t2"},
            "admins[0].name",
            "duplicate admin 'Dana'",
        ),
        (
            {"security": {"admin_token_env": "S"}, "admins": [{"name": "admin", "token_env": "A"}]},
            {"A": "t1", "S": "t2"},
            "admins[0].name",
            "duplicate admin 'admin'",
        ),
        (
            {"admins": [{"name": "Dana", "token_env": "A"}, {"name": "Lee", "token_env": "B"}]},
            {"A": "same", "B": "same"},
            "admins[0].token_env",
            "share one token",
        ),
        (
            {"security": {"admin_token_env": "S"}, "admins": [{"name": "Dana", "token_env": "A"}]},
            {"A": "same", "S": "same"},
            "admins[0].token_env",
            "share one token",
        ),
    ],
)
def test_config_errors_name_the_key(data: dict, env: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env)
    assert info.value.key == key
    assert message in str(info.value)
    assert str(info.value).startswith(f"{key}: ")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, {})


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        ("[smtp]\nbogus = 1\n", "config error: smtp.bogus: unknown key"),
        (
            "[providers.mailchimp]\nenabled = true\n",
            "config error: providers.mailchimp.api_key_env: environment variable MAILCHIMP_API_KEY is not set",
        ),
        (
            '[[topics]]\nname = "news"\nhubspot_subscription = "1"\n',
            "config error: topics[0].hubspot_subscription: names provider hubspot, which is not enabled",
        ),
    ],
)
def test_cli_prints_one_line_and_exits_2(tmp_path: Path, toml: str, line: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "adapters", "--config", str(path), "status", "a@example.com"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == line
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_the_database_url_can_come_from_the_environment() -> None:
    url = "postgresql+psycopg://optout:pa55word@db.internal/optout"
    config = parse_config({"database": {"url_env": "OPTOUT_HUB_DATABASE_URL"}}, {"OPTOUT_HUB_DATABASE_URL": url})
    assert config.database.url == url
    assert parse_config({"database": {"url": "sqlite:///x.db"}}, {}).database.url == "sqlite:///x.db"


def test_relay_credentials_need_tls_unless_the_relay_is_on_this_machine() -> None:
    env = {"U": "user", "P": "pass"}
    relay = {"username_env": "U", "password_env": "P"}
    for host in ("127.0.0.1", "::1", "localhost"):
        assert parse_config({"confirmations": {**relay, "smtp_host": host}}, env).confirmations.username == Secret(
            "user"
        )
    tls = {**relay, "smtp_host": "relay.example.net", "starttls": True}
    assert parse_config({"confirmations": tls}, env).confirmations.starttls is True
    assert parse_config({"confirmations": {"smtp_host": "relay.example.net"}}, env).confirmations.username is None


def test_secrets_named_by_default_resolve_without_their_table() -> None:
    """A file with no [security] table still reads OPTOUT_HUB_SECRET and OPTOUT_HUB_ADMIN_TOKEN."""
    config = parse_config({"smtp": {"port": 2526}}, {"OPTOUT_HUB_SECRET": "s" * 20, "OPTOUT_HUB_ADMIN_TOKEN": "a" * 20})
    assert config.security.token_secret == Secret("s" * 20)
    assert config.security.admin_token == Secret("a" * 20)
    assert parse_config({}, {}).security.admin_token is None


def test_named_admins_and_the_single_token_are_all_admin_accounts() -> None:
    data = {"admins": [{"name": "Dana Ops", "token_env": "DANA"}], "security": {"admin_token_env": "SHARED"}}
    config = parse_config(data, {"DANA": "d" * 20, "SHARED": "s" * 20})
    assert [(a.name, a.token) for a in config.admin_accounts()] == [
        ("Dana Ops", Secret("d" * 20)),
        ("admin", Secret("s" * 20)),
    ]
    assert "d" * 20 not in repr(config.admins)
    assert parse_config({}, {}).admin_accounts() == ()


def test_smtp_domains_are_kept_in_one_normalized_form() -> None:
    """Every part compares a recipient's domain with ``[smtp].domains`` through
    ``normalize_domain``: the configured domains are in that form from the start."""
    config = parse_config({"smtp": {"domains": ["Bücher.Example.", "xn--bcher-kva.example", "Unsub.EXAMPLE.com"]}}, {})
    assert config.smtp.domains == ("xn--bcher-kva.example", "unsub.example.com")


def test_compliance_holidays_are_dates() -> None:
    config = parse_config({"compliance": {"holidays": ["2026-12-25", "2027-01-01"]}}, {})
    assert config.compliance.holiday_dates() == {date(2026, 12, 25), date(2027, 1, 1)}
    with pytest.raises(ConfigError, match=r"compliance\.holidays\[1\]: not a date"):
        parse_config({"compliance": {"holidays": ["2026-12-25", "25/12/2026"]}}, {})


def test_subscribers_need_a_url_a_standard_webhooks_secret_and_known_kinds() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    env = {"S": "s" * 32, "HOOK": secret}
    base = {"security": {"token_secret_env": "S"}}
    config = parse_config(
        {**base, "subscribers": [{"url": "https://crm.example.com/h", "secret_env": "HOOK", "events": ["complaint"]}]},
        env,
    )
    (sub,) = config.subscribers
    assert (sub.url, sub.events, sub.secret) == ("https://crm.example.com/h", ("complaint",), Secret(secret))
    assert secret not in repr(config)
    cases = [
        ({"url": "https://x.example"}, "subscribers[0]: needs url and secret_env"),
        ({"url": "ftp://x", "secret_env": "HOOK"}, "subscribers[0].url: must be an http(s) URL"),
        ({"url": "https://x", "secret_env": "NONE"}, "subscribers[0].secret_env: environment variable NONE is not set"),
        (
            {"url": "https://x", "secret_env": "S"},
            "subscribers[0].secret_env: must be whsec_ + base64 of 24 to 64 bytes",
        ),
        (
            {"url": "https://x", "secret_env": "HOOK", "events": ["opened"]},
            "subscribers[0].events[0]: must be one of unsubscribe, complaint, bounce, resubscribe",
        ),
        ({"url": "https://x", "secret_env": "HOOK", "colour": 1}, "subscribers[0].colour: unknown key"),
    ]
    for table, message in cases:
        with pytest.raises(ConfigError) as err:
            parse_config({**base, "subscribers": [table]}, env)
        assert str(err.value) == message
