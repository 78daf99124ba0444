"""``optout-hub`` as real processes on one configuration (a database, free ports), for the
end-to-end, crash and outage tests: CLI commands, and ``smtp`` or ``serve`` started, killed
(SIGKILL) or stopped (SIGTERM)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from adapters.store.database import make_engine
from adapters.store.models import Suppression
from tests.support.environment import TEST_SECRET
from tests.support.mail import DOMAIN
from tests.support.servers import free_port

FAST_WORKER = """enabled = true
poll_interval_seconds = 0.1
collect_window_seconds = 0.05
"""


class HubProcess:
    """One configuration and the ``optout-hub`` processes run on it. ``extra``: more TOML
    tables (providers, security); ``worker``: run the push worker inside ``serve``, polling
    fast (its back-off and leases as configured by default); ``retry_max_seconds``: the
    classification's longest back-off; ``env``: more environment for every process (the
    secrets ``extra`` names)."""

    def __init__(
        self,
        tmp_path: Path,
        database_url: str,
        *,
        extra: str = "",
        worker: bool = False,
        retry_max_seconds: float = 1.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.http_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.config = tmp_path / "optout-hub.toml"
        self.log = tmp_path / "optout-hub.log"  # stderr of every process started, for a failure's reader
        self.config.write_text(
            f"""
[database]
url = "{database_url}"

[http]
port = {self.http_port}
public_url = "{self.http_url}"

[smtp]
port = {self.port}
domains = ["{DOMAIN}"]
max_message_bytes = 20000
timeout_seconds = 10

[worker]
{FAST_WORKER if worker else "enabled = false"}

[inbound]
retry_max_seconds = {retry_max_seconds}

[[topics]]
name = "newsletter"
{extra}""",
            encoding="utf-8",
        )
        self.env = {**os.environ, "OPTOUT_HUB_SECRET": TEST_SECRET, "PYTHONUNBUFFERED": "1", **(env or {})}
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
        """Run ``optout-hub <command>`` (``smtp`` or ``serve``) until all its parts are up."""
        assert self.proc is None
        with self.log.open("a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "adapters", command, "--config", str(self.config)],
                env={**self.env, **env},
                stdout=subprocess.PIPE,
                stderr=log,
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
            if line.startswith("optout-hub: ready"):
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

    def suppressed(self) -> set[str]:
        """Every address the store holds opted out."""
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return set(connection.scalars(select(Suppression.email).where(Suppression.suppressed)))
        finally:
            engine.dispose()
