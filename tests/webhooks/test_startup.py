"""Only one worker of an arbiter reports a bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from webhooks import startup


@pytest.fixture
def tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again
    return tmp_path


def test_one_worker_per_arbiter_reports(tempdir: Path) -> None:
    arbiter = os.getpid()  # a running process, as the arbiter is while its workers start
    assert startup._first_to_report(arbiter) is True
    assert startup._first_to_report(arbiter) is False
    assert startup._first_to_report(arbiter) is False


def test_markers_of_exited_arbiters_are_removed(tempdir: Path) -> None:
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(exited.stdout)
    (tempdir / f"optout-hub-config-error-{pid}").touch()
    (tempdir / f"optout-hub-config-error-{pid}.boot.123").touch()
    # this process's id with another start: as when a restarted container's gunicorn is process 1 again
    (tempdir / f"optout-hub-config-error-{os.getpid()}.boot.1").touch()
    assert startup._first_to_report(os.getpid()) is True
    assert [p.name for p in tempdir.iterdir()] == [f"optout-hub-config-error-{startup._identity(os.getpid())}"]
    assert startup._first_to_report(os.getpid()) is False
