"""Detached Ed25519 signatures of audit exports (README "Compliance"), as pure functions.

The signature file is a few ``name: value`` lines::

    optout-hub audit signature v1
    algorithm: ed25519
    public-key: <base64 raw public key>
    size: <bytes>
    sha256: <hex digest of the export>
    signature: <base64 Ed25519 signature of every line above, newline-terminated>

An auditor checks it with the public key alone (``optout-hub audit public-key``), with
``optout-hub audit verify`` or any Ed25519 library. The key named in the file is only a hint:
verification always uses the key the verifier trusts.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HEADER = "optout-hub audit signature v1"


class VerifyError(Exception):
    """Why an export and its signature do not match (one line)."""


def private_key(raw_base64: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(raw_base64, validate=True))


def public_key_text(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise VerifyError("not a base64 raw Ed25519 public key") from None


@dataclasses.dataclass
class Digest:
    """The size and SHA-256 of an export, fed as it is written."""

    size: int = 0
    sha256: hashlib._Hash = dataclasses.field(default_factory=hashlib.sha256)

    def update(self, data: bytes) -> None:
        self.size += len(data)
        self.sha256.update(data)

    @classmethod
    def of(cls, stream: BinaryIO) -> Digest:
        digest = cls()
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
        return digest


def _signed_part(public_key: str, digest: Digest) -> str:
    return (
        f"{HEADER}\nalgorithm: ed25519\npublic-key: {public_key}\nsize: {digest.size}\n"
        f"sha256: {digest.sha256.hexdigest()}\n"
    )


def signature_file(key: Ed25519PrivateKey, digest: Digest) -> str:
    signed = _signed_part(public_key_text(key), digest)
    return signed + f"signature: {base64.b64encode(key.sign(signed.encode())).decode()}\n"


def verify(signature: str, digest: Digest, trusted: Ed25519PublicKey) -> None:
    """Raise :class:`VerifyError` unless ``signature`` (a signature file's text) is a valid
    signature by ``trusted`` of an export with ``digest``."""
    lines = signature.splitlines()
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    if not lines or lines[0] != HEADER or fields.get("algorithm") != "ed25519" or "signature" not in fields:
        raise VerifyError("the signature file is not an optout-hub audit signature")
    signed = "".join(line + "\n" for line in lines if not line.startswith("signature: "))
    try:
        trusted.verify(base64.b64decode(fields["signature"], validate=True), signed.encode())
    except (InvalidSignature, binascii.Error, ValueError):
        raise VerifyError("the signature file was altered, or not signed with this key") from None
    if fields.get("size") != str(digest.size) or fields.get("sha256") != digest.sha256.hexdigest():
        raise VerifyError("the export was altered: its size or SHA-256 differs from the signed one")
