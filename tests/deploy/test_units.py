"""The deployment files in docs/deploy/ are the ones an operator installs, so they are checked:
the systemd units by ``systemd-analyze verify`` (every key known, every value parsed). Postfix's
files are exercised end to end by tests/inbound/test_postfix.py; the gunicorn settings the web
unit loads, by tests/adapters/test_gunicorn_conf.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.prerequisites import require_tool

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def _installed(unit: Path, directory: Path) -> Path:
    """The unit as installed here: its programs where this machine has them, an existing
    system user, and the secrets file optional (this machine has none)."""
    text = unit.read_text()
    for program in ("optout-hub", "gunicorn"):
        found = shutil.which(program) or str(Path(sys.executable).with_name(program))
        text = text.replace(f"/opt/optout-hub/bin/{program}", found)
    text = text.replace("User=optout-hub", "User=daemon").replace("Group=optout-hub", "Group=daemon")
    text = text.replace("EnvironmentFile=/etc/", "EnvironmentFile=-/etc/")
    installed = directory / unit.name
    installed.write_text(text)
    return installed


def test_the_three_parts_have_units() -> None:
    assert [unit.name for unit in UNITS] == [
        "optout-hub-smtp.service",
        "optout-hub-web.service",
        "optout-hub-worker.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_accepts_the_unit_without_a_warning(unit: Path, tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "apt-get install systemd")
    result = subprocess.run(
        [analyze, "verify", str(_installed(unit, tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_does_report_a_broken_unit(tmp_path: Path) -> None:
    """The check above would catch a mistake: an unknown key and a bad value are reported."""
    analyze = require_tool("systemd-analyze", "apt-get install systemd")
    unit = _installed(DEPLOY / "systemd" / "optout-hub-worker.service", tmp_path)
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivileges=perhaps\nRestartz=always"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "perhaps" in result.stderr and "Restartz" in result.stderr
