"""What some tests need from the machine (PostgreSQL, Debian's chromium, swaks).

Where it is missing the test skips, with a reason that says how to get it; under ``CI`` it
fails instead, so CI always runs every test (``.ci/run`` installs and starts all of it).
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def unavailable(reason: str) -> NoReturn:
    """Skip the running test for ``reason``, or fail it under ``CI``."""
    if in_ci():
        pytest.fail(f"{reason} (CI runs every test, so nothing may be missing there)", pytrace=False)
    pytest.skip(f"{reason} (a skip outside CI only: with CI=true this test fails instead)")


def require_tool(name_or_path: str, install_hint: str) -> str:
    """The path of a program the test runs (a name on ``PATH`` or a path), or skip/fail."""
    path = shutil.which(name_or_path)
    if path is None:
        unavailable(f"needs {name_or_path}, which is not installed: {install_hint}")
    return path
