"""SendGrid test material: the official signed-webhook vector, and fresh keys to sign with."""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.providers import sendgrid
from tests.support.data import VECTORS

VECTOR = json.loads((VECTORS / "sendgrid_official.json").read_text())


def make_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh P-256 key and its public half encoded as SendGrid shows it."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


def sign(private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> dict[str, str]:
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {sendgrid.SIGNATURE_HEADER: base64.b64encode(signature).decode(), sendgrid.TIMESTAMP_HEADER: timestamp}
