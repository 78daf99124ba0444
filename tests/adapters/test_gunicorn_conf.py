"""``gunicorn -c python:adapters.gunicorn_conf``, as the README and the systemd unit run it: a
bad configuration is one line and exit 2 before any worker starts; one scrape of ``/metrics``
sums every worker's counters; gunicorn's and the app's logs share one format, with request ids."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path

import requests

from adapters.config import Config
from adapters.hub import Hub
from tests.support.gunicorn import start_gunicorn, wait_ready
from tests.support.servers import free_port

CONF = ("--config", "python:adapters.gunicorn_conf")
SECRET = "mc-webhook-secret-3f9a1c0e7b2d"
PROVIDER_ENV = {"MAILCHIMP_API_KEY": "0123456789abcdef-us6", "MAILCHIMP_WEBHOOK_SECRET": SECRET}


def test_a_bad_config_ends_in_one_line_and_exit_2_every_time(tmp_path: Path, test_env: dict[str, str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[smtp]\nbogus = 1\n")
    for _ in range(3):
        proc = start_gunicorn(config, test_env, free_port(), *CONF, "--workers", "3")
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (2, "optout-hub: config error: smtp.bogus: unknown key\n")


def _config(tmp_path: Path, database_url: str, logging_format: str) -> Path:
    config = tmp_path / "optout-hub.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n'
        '[security]\ntoken_secret_env = "OPTOUT_HUB_SECRET"\nadmin_token_env = "OPTOUT_HUB_ADMIN_TOKEN"\n'
        f'[logging]\nformat = "{logging_format}"\n'
        '[providers.mailchimp]\nenabled = true\nlists = ["abc123"]\n'
    )
    return config


def test_one_scrape_sums_the_counters_of_three_workers(
    tmp_path: Path,
    database_url: str,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    test_env: dict[str, str],
) -> None:
    make_hub(make_config())  # the schema, as `optout-hub db upgrade` makes it
    port = free_port()
    proc = start_gunicorn(_config(tmp_path, database_url, "text"), {**test_env, **PROVIDER_ENV}, port, *CONF, "-w", "3")
    try:
        wait_ready(proc, port)
        for _ in range(30):  # a new connection each: gunicorn's workers take them in turn
            r = requests.post(f"http://127.0.0.1:{port}/webhooks/mailchimp/forged", data={"type": "x"}, timeout=10)
            assert r.status_code == 404
        for _ in range(5):  # every scrape, whichever worker answers it, reads them all
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            assert 'optout_webhook_requests_total{provider="mailchimp",status="404"} 30.0' in text, text
            assert 'optout_outbox_dead{provider="mailchimp"} 0.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err.splitlines()[-15:]
    booted = set(re.findall(r"Booting worker with pid: (\d+)", err))
    assert len(booted) >= 3, err


def test_gunicorn_and_app_logs_are_json_lines_with_the_request_id(
    tmp_path: Path,
    database_url: str,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    test_env: dict[str, str],
) -> None:
    make_hub(make_config())
    port = free_port()
    proc = start_gunicorn(_config(tmp_path, database_url, "json"), {**test_env, **PROVIDER_ENV}, port, *CONF)
    try:
        wait_ready(proc, port)
        r = requests.post(
            f"http://127.0.0.1:{port}/webhooks/mailchimp/forged",
            data={"type": "x"},
            headers={"X-Request-Id": "req-from-nginx-42"},
            timeout=10,
        )
        assert r.headers["X-Request-Id"] == "req-from-nginx-42"
        minted = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{32}", minted)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    records = [json.loads(line) for line in err.splitlines()]  # every line, gunicorn's own too
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert any("POST /webhooks/mailchimp/… " in r["message"] for r in access), access  # secret path redacted
    (refusal,) = [r for r in records if "mailchimp webhook refused" in r["message"]]
    assert (refusal["level"], refusal["request_id"]) == ("WARNING", "req-from-nginx-42")
