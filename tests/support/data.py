"""Where the suite's data files are. All of them are inside the repository, so the suite runs
from a fresh clone alone."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data"
# The labelled mail corpus (``SOURCES.md`` says where every message comes from).
CORPUS = DATA / "corpus"
# Signature test vectors published by the providers.
VECTORS = DATA / "vectors"
# Provider webhook bodies, kept beside the provider tests that read them first.
PAYLOADS = TESTS / "adapters" / "providers" / "payloads"
