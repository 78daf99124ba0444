"""The wheel ``python -m build`` makes from pyproject.toml holds everything ``optout-hub serve`` needs at run
time (templates, static files, translations, migrations): installed into a fresh virtualenv,
away from this checkout, it creates its SQLite store and serves its pages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the wheel built from this checkout (its dependencies come from the
    machine's site-packages, so nothing is downloaded)."""
    base = tmp_path_factory.mktemp("packaging")
    wheels = base / "wheels"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(wheels), str(ROOT)],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("optout_hub-*.whl")
    venv = [sys.executable, "-m", "venv", "--system-site-packages", str(base / "venv")]
    subprocess.run(venv, check=True, timeout=120)
    python = base / "venv" / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, env=env, timeout=300)
    return base / "venv"


def test_the_wheel_installs_and_serves_its_pages(venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import adapters, webhooks; print(adapters.__file__, webhooks.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.count(str(venv)) == 2, where  # the wheel's code, not this checkout's
    shown = subprocess.run([venv / "bin" / "optout-hub", "--version"], env=env, capture_output=True, text=True)
    assert shown.stdout.strip() == f"optout-hub {version}"

    http_port, smtp_port = free_port(), free_port()
    config = tmp_path / "optout-hub.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "hub.db"}"\n[http]\nport = {http_port}\n[smtp]\nport = {smtp_port}\n'
    )
    proc = subprocess.Popen(
        [venv / "bin" / "optout-hub", "--config", str(config), "serve"],
        cwd=tmp_path,
        env={**env, "OPTOUT_HUB_ADMIN_TOKEN": "a" * 32},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        # A page from the wheel's templates, in a language from its compiled catalogues.
        page = requests.get(f"{base}/admin/login?lang=ar", headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 200 and 'dir="rtl"' in page.text
        assert requests.get(f"{base}/static/style.css", timeout=10).status_code == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert (tmp_path / "hub.db").exists()  # created and migrated by the wheel's migrations
