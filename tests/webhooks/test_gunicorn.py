"""``gunicorn 'webhooks:create_app()'``, the production way to serve the app, in a subprocess."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import requests

from adapters.config import Config
from adapters.hub import Hub
from tests.support.environment import ADMIN_TOKEN
from tests.support.gunicorn import start_gunicorn, wait_ready
from tests.support.pages import issue_token
from tests.support.servers import free_port

MAILCHIMP_SECRET = "mc-webhook-secret-3f9a1c0e7b2d"


def test_gunicorn_serves_the_app_and_stops_on_sigterm(
    tmp_path: Path,
    database_url: str,
    make_config: Callable[..., Config],
    make_hub: Callable[[Config], Hub],
    test_env: dict[str, str],
) -> None:
    hub = make_hub(make_config())  # the schema, as `optout-hub db upgrade` makes it
    token = issue_token(hub, "hal@example.com")
    config = tmp_path / "optout-hub.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n'
        '[security]\ntoken_secret_env = "OPTOUT_HUB_SECRET"\nadmin_token_env = "OPTOUT_HUB_ADMIN_TOKEN"\n'
        '[providers.mailchimp]\nenabled = true\nlists = ["abc123"]\n'
    )
    port = free_port()
    mailchimp = {"MAILCHIMP_API_KEY": "0123456789abcdef-us6", "MAILCHIMP_WEBHOOK_SECRET": MAILCHIMP_SECRET}
    proc = start_gunicorn(config, {**test_env, **mailchimp}, port, "--access-logfile", "-")
    try:
        wait_ready(proc, port)
        r = requests.post(
            f"http://127.0.0.1:{port}/api/v1/suppressions",
            json={"email": "gus@example.com", "reason": "phone"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        for path in (f"/webhooks/mailchimp/{MAILCHIMP_SECRET}", f"/u/{token}", f"/preferences/{token}?lang=ar"):
            assert requests.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        access_log, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # the access log has every request, with neither the webhook's path secret nor a token
    assert '"GET /webhooks/mailchimp/… HTTP/1.1" 200' in access_log
    assert f'"GET /u/{token[:4]}… HTTP/1.1" 200' in access_log
    assert f'"GET /preferences/{token[:4]}…?lang=ar HTTP/1.1" 200' in access_log
    assert MAILCHIMP_SECRET not in access_log + err and token not in access_log + err


def test_a_bad_config_stops_gunicorn_with_one_line(tmp_path: Path, test_env: dict[str, str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[smtp]\nbogus = 1\n")
    proc = start_gunicorn(config, test_env, free_port())
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4  # gunicorn: "App failed to load."
    # once: with two workers both fail to load, and a second "App failed to load" reaped while
    # the arbiter halts used to end in a traceback and exit status 1
    assert err.splitlines().count("optout-hub: config error: smtp.bogus: unknown key") == 1
    assert "Traceback" not in err
