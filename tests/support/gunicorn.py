"""gunicorn in a subprocess, as production runs the app, and a wait for it to answer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests


def start_gunicorn(config: Path, env: dict[str, str], port: int, *options: str) -> subprocess.Popen[str]:
    """``gunicorn [options] 'webhooks:create_app()'`` on 127.0.0.1:``port`` with the hub's
    configuration file ``config``; two workers unless ``options`` say otherwise."""
    command = [sys.executable, "-m", "gunicorn", "--workers", "2", *options, "--bind", f"127.0.0.1:{port}"]
    return subprocess.Popen(
        [*command, "webhooks:create_app()"],
        env={**os.environ, **env, "OPTOUT_HUB_CONFIG": str(config)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 90.0) -> None:
    """Until ``/healthz`` answers 200: the master listens and a worker has loaded the app.
    Fails at once if gunicorn exits; the deadline is generous for a loaded machine."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or workers still booting
            pass
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "gunicorn did not answer /healthz"
        time.sleep(0.1)
