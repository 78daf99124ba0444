"""The ``optout-hub`` command end to end, in subprocesses, on a real database."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import update

from adapters.cli import CALLER_PARTS, load_part
from adapters.config import Config, load_config
from adapters.hub import Hub
from adapters.store.models import OutboxRow
from tests.support.environment import ADMIN_TOKEN, TEST_SECRET
from tests.support.servers import free_port


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    config = tmp_path / "optout-hub.toml"
    config.write_text(
        f"""
[database]
url = "{database_url}"
[smtp]
port = {free_port()}
domains = ["unsub.example.com"]
[http]
port = {free_port()}
public_url = "https://unsub.example.com"
[security]
token_secret_env = "OPTOUT_HUB_SECRET"
admin_token_env = "OPTOUT_HUB_ADMIN_TOKEN"
[[topics]]
name = "news"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_HUB")}
    env.update(OPTOUT_HUB_CONFIG=str(config), OPTOUT_HUB_SECRET=TEST_SECRET, OPTOUT_HUB_ADMIN_TOKEN=ADMIN_TOKEN)
    subprocess.run(
        [sys.executable, "-m", "adapters", "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120
    )
    return env


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_help_for_every_command(cli_env: dict[str, str]) -> None:
    commands = [
        "serve",
        "smtp",
        "web",
        "worker",
        "db",
        "status",
        "headers",
        "import",
        "export",
        "sync",
        "providers",
        "outbox",
    ]
    top = run(cli_env, "--help")
    assert top.returncode == 0
    for command in commands:
        assert command in top.stdout
        result = run(cli_env, command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert "--config" in result.stdout


@pytest.mark.parametrize("part", sorted(CALLER_PARTS))
def test_every_part_from_the_callers_resolves(part: str) -> None:
    """The table of dotted paths is the core's only link to inbound and webhooks: a rename
    there must fail here, not at start-up."""
    assert callable(load_part(part))


def test_headers_status_import_export(cli_env: dict[str, str], tmp_path: Path) -> None:
    headers = run(cli_env, "headers", "Pat@Example.com", "--topic", "news", "--campaign", "spring")
    assert headers.returncode == 0, headers.stderr
    lines = headers.stdout.splitlines()
    assert (
        lines[0].startswith("List-Unsubscribe: <mailto:unsub-")
        and "@unsub.example.com>, <https://unsub.example.com/u/" in lines[0]
    )
    assert lines[1] == "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    again = run(cli_env, "headers", "pat@example.com", "--topic", "news", "--campaign", "spring")
    assert again.stdout == headers.stdout  # idempotent: same recipient, same token

    status = json.loads(run(cli_env, "status", "pat@example.com").stdout)
    assert status == {"email": "pat@example.com", "suppressed": False, "scopes": [], "events": []}

    data = tmp_path / "list.csv"
    data.write_text(
        "email,list\nPat@Example.com,old\nnot-an-address,old\nlee@example.org,old\nlee@example.org,dup\n,empty\n"
    )
    imported = run(cli_env, "import", str(data), "--source", "legacy-esp")
    assert imported.returncode == 1, imported.stderr  # bad lines: reported, the rest imported
    assert (
        imported.stdout.strip()
        == "imported 2, duplicates 1, invalid 2 (line 3: address must contain exactly one @, line 6: empty address)"
    )
    assert "\r" not in imported.stderr  # no progress bar when not on a terminal

    status = json.loads(run(cli_env, "status", "PAT@example.com").stdout)
    assert status["suppressed"] is True and status["scopes"] == ["global"]
    assert status["events"][0]["source"] == "import"

    exported = run(cli_env, "export")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["email"], r["scope"], r["kind"], r["source"]) for r in rows] == [
        ("lee@example.org", "global", "unsubscribe", "import"),
        ("Pat@example.com", "global", "unsubscribe", "import"),
    ]
    as_json = json.loads(run(cli_env, "export", "--format", "json").stdout)
    assert [r["email"] for r in as_json] == ["lee@example.org", "Pat@example.com"]
    assert json.loads(run(cli_env, "export", "--format", "json", "--since", "2999-01-01").stdout) == []
    bad = run(cli_env, "export", "--since", "yesterday")
    assert bad.returncode == 1 and "not an ISO 8601 time" in bad.stderr


def test_import_from_stdin_and_errors(cli_env: dict[str, str], tmp_path: Path) -> None:
    piped = run(cli_env, "import", "-", "--kind", "complaint", stdin="email\nx@example.com\n")
    assert piped.stdout.strip() == "imported 1, duplicates 0, invalid 0"
    assert json.loads(run(cli_env, "status", "x@example.com").stdout)["events"][0]["kind"] == "complaint"
    missing = run(cli_env, "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and missing.stderr.startswith("error: cannot read")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("address\nx@example.com\n")
    result = run(cli_env, "import", str(nocol))
    assert result.returncode == 1 and "no 'email' or 'Email Address' column" in result.stderr
    assert run(cli_env, "status", "not-an-address").returncode == 1


def test_import_a_providers_export_in_latin1_by_column_without_pushing(cli_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "legacy.csv"
    data.write_bytes("Name;x,Kontakt\nZoë,zoe@example.de\n".encode("cp1252"))
    result = run(cli_env, "import", str(data), "--column", "kontakt", "--no-push", "--source", "sendgrid")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "imported 1, duplicates 0, invalid 0\n"
    assert result.stderr == "note: not UTF-8; read as cp1252 (choose with --encoding)\n"
    event = json.loads(run(cli_env, "status", "zoe@example.de").stdout)["events"][0]
    assert event["source"] == "sendgrid"
    told = run(cli_env, "import", str(data), "--column", "Kontakt", "--encoding", "latin-1")
    assert (told.returncode, told.stderr) == (0, "")
    unknown = run(cli_env, "import", str(data), "--encoding", "klingon")
    assert unknown.returncode == 1 and unknown.stderr == "error: unknown encoding 'klingon'\n"


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not printed; got {lines}")


@contextlib.contextmanager
def serving(env: dict[str, str], cwd: Path | None = None) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``optout-hub serve`` in a subprocess, yielded once it prints that it is ready."""
    with subprocess.Popen(
        [sys.executable, "-m", "adapters", "serve"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            yield proc, wait_for_line(proc, "ready")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_serve_listens_answers_and_stops_cleanly(cli_env: dict[str, str]) -> None:
    with serving(cli_env) as (proc, lines):
        http_line = next(line for line in lines if "HTTP listening on" in line)
        assert any("SMTP listening on 127.0.0.1:" in line for line in lines)
        url = http_line.split("HTTP listening on ")[1].strip()
        assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok", "database": "ok"}
        r = requests.post(
            f"{url}/api/v1/suppressions",
            json={"email": "m@example.com", "reason": "test"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=5,
        )
        assert r.status_code == 201
        assert (
            'optout_events_total{kind="unsubscribe",source="api"} 1.0' in requests.get(f"{url}/metrics", timeout=5).text
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_defaults_on_a_fresh_directory(tmp_path: Path) -> None:
    """No config at all: SQLite file in the working directory, SMTP 2525, HTTP 8025."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_HUB")}
    with serving(env, tmp_path) as (proc, lines):
        assert "optout-hub: HTTP listening on http://127.0.0.1:8025" in lines
        assert "optout-hub: SMTP listening on 127.0.0.1:2525" in lines
        assert (tmp_path / "optout-hub.db").exists()
        assert requests.get("http://127.0.0.1:8025/healthz", timeout=5).status_code == 200
        # no admin token configured: the API refuses
        assert requests.get("http://127.0.0.1:8025/api/v1/suppressions/a@example.com", timeout=5).status_code == 401
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_a_signal_delivered_to_another_thread_still_stops_the_service(
    make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]
) -> None:
    """The kernel may hand SIGTERM to any thread of the process (it did, under load); the
    service must still stop. In-process: the signal is sent to the worker thread only."""
    from adapters.cli import run_components

    hub = make_hub(make_config())
    done = threading.Event()

    def deliver() -> None:
        deadline = time.monotonic() + 10
        while (
            not (worker := next((t for t in threading.enumerate() if t.name == "worker"), None))
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert worker is not None
        signal.pthread_kill(worker.ident, signal.SIGTERM)
        if not done.wait(10):  # a hung main thread: wake it so the test fails instead of hanging
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

    sender = threading.Thread(target=deliver, daemon=True)
    before = signal.getsignal(signal.SIGTERM)
    sender.start()
    start = time.monotonic()
    assert run_components(hub, ["worker"]) == 0
    elapsed = time.monotonic() - start
    done.set()
    sender.join()
    assert elapsed < 5, f"stopped only after {elapsed:.1f} s"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_import_shows_a_progress_bar_on_a_terminal(cli_env: dict[str, str], tmp_path: Path) -> None:
    import pty

    data = tmp_path / "big.csv"
    data.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(25_000)))
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "adapters", "import", str(data)],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=120,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.stdout.strip() == "imported 25000, duplicates 0, invalid 0"
    text = shown.decode()
    assert "\r[" in text and "100.0% 25,000 rows" in text


def test_secrets_never_reach_logs_or_output(cli_env: dict[str, str], tmp_path: Path) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    public_key = base64.b64encode(public).decode()
    env = {**cli_env, "SENDGRID_API_KEY": "SG.super-secret-api-key", "SENDGRID_WEBHOOK_PUBLIC_KEY": public_key}
    config = Path(env["OPTOUT_HUB_CONFIG"])
    config.write_text(
        config.read_text().replace("[smtp]", '[logging]\nlevel = "DEBUG"\n[providers.sendgrid]\nenabled = true\n[smtp]')
    )
    outputs = []
    for args in (["headers", "a@example.com"], ["status", "a@example.com"], ["export"], ["import", "-"]):
        result = run(env, *args, stdin="email\na@example.com\n")
        outputs.append(result.stdout + result.stderr)
    with serving(env) as (proc, lines):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        outputs.append("\n".join(lines))
    everything = "\n".join(outputs)
    for secret in (TEST_SECRET, ADMIN_TOKEN, "SG.super-secret-api-key", public_key):
        assert secret not in everything


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path, backend: str) -> None:
    port = free_port()
    url, place = {
        "postgresql": (f"postgresql+psycopg://optout:pa55-w0rd@127.0.0.1:{port}/optout", f"127.0.0.1:{port}"),
        "sqlite": (f"sqlite:///{tmp_path / 'missing' / 'x.db'}", str(tmp_path / "missing" / "x.db")),
    }[backend]
    config = tmp_path / "optout-hub.toml"
    config.write_text('[database]\nurl_env = "OPTOUT_HUB_DATABASE_URL"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_HUB")}
    env.update(OPTOUT_HUB_CONFIG=str(config), OPTOUT_HUB_DATABASE_URL=url, OPTOUT_HUB_SECRET=TEST_SECRET)
    for args in (["db", "upgrade"], ["status", "ann@example.com"], ["export"]):
        proc = run(env, *args)
        assert (proc.returncode, proc.stderr) == (1, f"error: database unreachable: {place}\n"), args
        assert "pa55-w0rd" not in proc.stdout


@pytest.mark.parametrize("part", ["smtp", "worker"])
def test_a_part_run_alone_serves_its_metrics_on_its_port(cli_env: dict[str, str], part: str) -> None:
    config = Path(cli_env["OPTOUT_HUB_CONFIG"])
    port = free_port()
    config.write_text(config.read_text() + f"[metrics]\n{part}_port = {port}\n")
    with subprocess.Popen(
        [sys.executable, "-m", "adapters", part],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            lines = wait_for_line(proc, "ready")
            assert f"optout-hub: metrics on http://127.0.0.1:{port}/metrics" in lines
            if part == "smtp":
                smtp_port = int(re.search(r"SMTP listening on 127\.0\.0\.1:(\d+)", "\n".join(lines)).group(1))  # type: ignore[union-attr]
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
                    client.sendmail(
                        "a@example.org", ["unsub@unsub.example.com"], b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n"
                    )
            deadline = time.monotonic() + 30
            while True:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                if part == "worker" or re.search(r"optout_smtp_messages_total\{classification=\"\w+\"\} 1\.0", text):
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.2)
            assert "# HELP optout_push_total" in text and "# HELP optout_outbox_dead" in text
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_erase_and_status_by_category(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert "--expired-evidence" in run(cli_env, "erase", "--help").stdout
    data = tmp_path / "list.csv"
    data.write_text("email,note\nZq7Cli@Example.com,zq7cli at the fair\n")
    assert run(cli_env, "import", str(data)).returncode == 0
    assert run(cli_env, "import", str(data), "--kind", "complaint").returncode == 0
    refused = run(cli_env, "erase", "zq7cli@example.com")
    assert refused.returncode == 1 and "erasure_key_env" in refused.stderr  # no key configured
    keyed = {**cli_env, "OPTOUT_HUB_ERASURE_KEY": "cli-erasure-key-0123456789"}
    erased = run(keyed, "erase", "zq7cli@example.com")
    assert erased.returncode == 0, erased.stderr
    result = json.loads(erased.stdout)
    assert result["already_erased"] is False and result["removed"]["events"] == 2
    assert run(cli_env, "status", "zq7cli@example.com").returncode == 2  # the erased need their key to start
    marketing = json.loads(run(keyed, "status", "ZQ7CLI@example.com").stdout)
    assert (marketing["suppressed"], marketing["erased"], marketing["scopes"]) == (True, True, ["global"])
    assert "zq7cli" not in json.dumps(marketing["events"]).lower()
    transactional = json.loads(run(keyed, "status", "zq7cli@example.com", "--category", "transactional").stdout)
    assert (transactional["suppressed"], transactional["category"]) == (True, "transactional")  # it complained
    purged = run(keyed, "erase", "--expired-evidence")
    assert purged.returncode == 0 and purged.stdout.strip() == "purged 0 evidence rows (retention.evidence_days = 0)"
    assert run(keyed, "erase").returncode == 1  # an address, or --expired-evidence


def test_outbox_retry_puts_a_providers_dead_rows_back(cli_env: dict[str, str], tmp_path: Path) -> None:
    config = Path(cli_env["OPTOUT_HUB_CONFIG"])
    config.write_text(config.read_text() + '[providers.sendgrid]\nenabled = true\nwebhook_public_key_env = ""\n')
    env = {**cli_env, "SENDGRID_API_KEY": "SG.test-key"}
    data = tmp_path / "list.csv"
    data.write_text("email\na@example.com\nb@example.com\n")
    assert run(env, "import", str(data)).returncode == 0
    hub = Hub.open(load_config(str(config), env))
    try:
        with hub.sessions.begin() as session:
            session.execute(update(OutboxRow).values(state="dead", due_at=datetime(2026, 1, 1, tzinfo=UTC)))
    finally:
        hub.close()
    later = run(env, "outbox", "retry", "--provider", "sendgrid", "--since", "2026-06-01")
    assert (later.returncode, later.stdout) == (0, "sendgrid: 0 dead rows queued again\n")
    done = run(env, "outbox", "retry", "--provider", "sendgrid", "--since", "2025-12-31T00:00:00+00:00")
    assert (done.returncode, done.stdout) == (0, "sendgrid: 2 dead rows queued again\n")
    bad = run(env, "outbox", "retry", "--provider", "sendgrid", "--since", "soon")
    assert bad.returncode == 1 and "not an ISO 8601 time" in bad.stderr
    assert run(env, "outbox", "retry").returncode == 2  # --provider is required
