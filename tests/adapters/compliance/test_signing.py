"""The detached Ed25519 signature of audit exports: what it signs, and every alteration refused."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.compliance.signing import Digest, VerifyError, load_public_key, signature_file, verify

EXPORT = b"id,email\n1,pat@example.com\n"


def test_an_auditor_checks_it_with_any_ed25519_library() -> None:
    key = Ed25519PrivateKey.generate()
    text = signature_file(key, Digest.of(io.BytesIO(EXPORT)))
    lines = text.splitlines()
    assert lines[:2] == ["optout-hub audit signature v1", "algorithm: ed25519"]
    assert lines[3:5] == [f"size: {len(EXPORT)}", f"sha256: {hashlib.sha256(EXPORT).hexdigest()}"]
    signed = "".join(line + "\n" for line in lines[:-1]).encode()
    key.public_key().verify(base64.b64decode(lines[-1].removeprefix("signature: ")), signed)  # raises if bad
    verify(text, Digest.of(io.BytesIO(EXPORT)), key.public_key())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, e: (t, e + b"2,x@example.com\n"), "the export was altered"),
        (lambda t, e: (t, e.replace(b"pat", b"pam")), "the export was altered"),
        (lambda t, e: (t.replace("size: ", "size: 1"), e), "the signature file was altered"),
        (lambda t, e: (t.replace("ed25519\n", "ed25519\nnote: fine\n"), e), "the signature file was altered"),
        (lambda t, e: (t.replace("signature: ", "signature: A"), e), "the signature file was altered"),
        (lambda t, e: (t.replace("v1", "v2"), e), "not an optout-hub audit signature"),
        (lambda t, e: ("", e), "not an optout-hub audit signature"),
    ],
    ids=["line-added", "byte-changed", "size", "extra-line", "signature", "header", "empty"],
)
def test_every_alteration_is_refused(change: Callable[[str, bytes], tuple[str, bytes]], message: str) -> None:
    key = Ed25519PrivateKey.generate()
    text, export = change(signature_file(key, Digest.of(io.BytesIO(EXPORT))), EXPORT)
    with pytest.raises(VerifyError, match=message):
        verify(text, Digest.of(io.BytesIO(export)), key.public_key())


def test_another_key_is_refused_and_a_bad_public_key_named() -> None:
    text = signature_file(Ed25519PrivateKey.generate(), Digest.of(io.BytesIO(EXPORT)))
    with pytest.raises(VerifyError, match="not signed with this key"):
        verify(text, Digest.of(io.BytesIO(EXPORT)), Ed25519PrivateKey.generate().public_key())
    with pytest.raises(VerifyError, match="not a base64 raw Ed25519 public key"):
        load_public_key("c2hvcnQ=")
