"""``optout-hub audit`` (README "Compliance"): one address's history as JSON, a period's
events as CSV with a detached Ed25519 signature (``FILE.sig``), and checking one."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from adapters.compliance import signing
from adapters.compliance.signing import Digest, load_public_key, signature_file, verify
from adapters.config import Config
from adapters.errors import ConfigError, OptOutHubError
from adapters.hub import Hub
from adapters.store.audit import PERIOD_FIELDS, address_history, period_rows

SIGNATURE_SUFFIX = ".sig"
USAGE = "usage: audit EMAIL | audit --since ISO --until ISO --format csv [--output FILE] | audit verify FILE SIGNATURE"


def run(
    config: Config,
    target: Sequence[str],
    *,
    since: datetime | None,
    until: datetime | None,
    csv_format: bool,
    output: str | None,
    public_key: str | None,
) -> int:
    """The ``audit`` command: ``target`` is ``[EMAIL]``, ``["verify", FILE, SIGNATURE]``,
    ``["public-key"]`` or nothing (the period export). Its exit status."""
    if list(target) == ["public-key"]:
        print(signing.public_key_text(signing_key(config)))
        return 0
    if target[:1] == ["verify"]:
        if len(target) != 3:
            raise OptOutHubError(USAGE)
        return _verify(config, Path(target[1]), Path(target[2]), public_key)
    if len(target) > 1 or (not target and not csv_format):
        raise OptOutHubError(USAGE)
    hub = Hub.open(config)
    try:
        with hub.sessions() as session:
            if target:
                write_history(session, target[0], sys.stdout)
                return 0
            if since is None or until is None:
                raise OptOutHubError("audit --format csv needs --since and --until")
            if output is None:
                write_period(session, since, until, sys.stdout.buffer)
                print("audit: no --output FILE: the export is not signed", file=sys.stderr)
                return 0
            try:
                signature = export_signed(session, since, until, Path(output), signing_key(config))
            except OSError as exc:
                raise OptOutHubError(f"cannot write {exc.filename}: {exc.strerror}") from None
    finally:
        hub.close()
    print(f"audit: wrote {output} and its signature {signature}")
    return 0


def _verify(config: Config, export: Path, signature: Path, public_key: str | None) -> int:
    try:
        verify_files(export, signature, trusted_key(config, public_key))
    except OSError as exc:
        raise OptOutHubError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except signing.VerifyError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 1
    print(f"verify: ok: {export} is intact and signed with this key")
    return 0


def write_history(session: Session, email: str, out: TextIO) -> None:
    json.dump(address_history(session, email), out, indent=2, ensure_ascii=False)
    out.write("\n")


def signing_key(config: Config) -> Ed25519PrivateKey:
    key = config.security.audit_signing_key
    if key is None:
        raise ConfigError(
            "security.audit_signing_key_env",
            f"environment variable {config.security.audit_signing_key_env} is not set (needed to sign)",
        )
    return signing.private_key(key.reveal())


def write_period(session: Session, since: datetime, until: datetime, out: BinaryIO) -> Digest:
    """Stream the period's events as CSV (UTF-8) to ``out``; the size and SHA-256 written."""
    digest = Digest()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PERIOD_FIELDS, lineterminator="\n")
    writer.writeheader()
    for i, row in enumerate(period_rows(session, since, until)):
        writer.writerow(row)
        if i % 500 == 499:
            _flush(buffer, out, digest)
    _flush(buffer, out, digest)
    return digest


def _flush(buffer: io.StringIO, out: BinaryIO, digest: Digest) -> None:
    data = buffer.getvalue().encode()
    out.write(data)
    digest.update(data)
    buffer.seek(0)
    buffer.truncate()


def export_signed(session: Session, since: datetime, until: datetime, path: Path, key: Ed25519PrivateKey) -> Path:
    """Write the export to ``path`` and its signature beside it; the signature's path."""
    with path.open("wb") as out:
        digest = write_period(session, since, until, out)
    signature = path.with_name(path.name + SIGNATURE_SUFFIX)
    signature.write_text(signature_file(key, digest))
    return signature


def trusted_key(config: Config, public_key: str | None) -> Ed25519PublicKey:
    """The key to verify with: ``--public-key``, else the configured signing key's."""
    if public_key is not None:
        return load_public_key(public_key)
    return signing_key(config).public_key()


def verify_files(export: Path, signature: Path, trusted: Ed25519PublicKey) -> None:
    """Raise :class:`~adapters.compliance.signing.VerifyError` unless they match."""
    with export.open("rb") as stream:
        digest = Digest.of(stream)
    verify(signature.read_text(encoding="utf-8", errors="replace"), digest, trusted)
