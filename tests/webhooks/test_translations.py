"""The page and mail catalogues: complete, compiled, and in step with the code."""

from __future__ import annotations

import gettext
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOGUES = ROOT / "adapters" / "translations"
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def read(path: Path):
    with path.open("rb") as fh:
        return read_po(fh)


def test_template_is_in_step_with_the_code(tmp_path: Path) -> None:
    out = tmp_path / "messages.pot"
    cmd = [
        sys.executable,
        "-m",
        "babel.messages.frontend",
        "extract",
        "-F",
        str(CATALOGUES / "babel.cfg"),
        "-k",
        "lazy_gettext",
        "-k",
        "N_",
        "--no-location",
        "--omit-header",
        "-o",
        str(out),
        "webhooks",
        "adapters/worker/confirmations.py",
        "adapters/labels.py",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    assert {m.id for m in read(out) if m.id} == {m.id for m in read(CATALOGUES / "messages.pot") if m.id}


@pytest.mark.parametrize("lang", ["zh", "ar"])
def test_every_message_is_translated_and_compiled(lang: str) -> None:
    po = read(CATALOGUES / lang / "LC_MESSAGES" / "messages.po")
    ids = {m.id for m in read(CATALOGUES / "messages.pot") if m.id}
    with (CATALOGUES / lang / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        mo = gettext.GNUTranslations(fh)
    for message in po:
        if not message.id:
            continue
        assert message.string, f"{lang}: untranslated {message.id!r}"
        assert sorted(PLACEHOLDER.findall(message.string)) == sorted(PLACEHOLDER.findall(message.id)), message.id
        assert mo.gettext(message.id) == message.string, f"{lang}: .mo is stale for {message.id!r}"
    assert {m.id for m in po if m.id} == ids
