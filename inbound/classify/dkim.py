"""DKIM: whether a message carries a verifying signature aligned with a domain.

The one place the classifier may reach outside itself, through the injected DNS lookup
(dkimpy's ``dnsfunc``): tests pass local keys, the classification thread dkimpy's own
resolver. Without a lookup nothing verifies, and requests are unverified.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import dkim

DNSLookup = Callable[..., bytes | None]  # dkimpy's dnsfunc(name: bytes, timeout=5)


def verify_dkim(raw: bytes, domain: str, dns: DNSLookup) -> bool:
    """Whether a DKIM signature whose ``d=`` is ``domain`` or a parent of it verifies."""
    domain = domain.lower().rstrip(".")
    try:
        d = dkim.DKIM(raw)
        count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    except Exception:
        return False
    for idx in range(count):
        try:
            ok = d.verify(idx=idx, dnsfunc=dns)
            signer = (d.domain or b"").decode("ascii", "replace").lower().rstrip(".")
        except Exception:
            continue
        if ok and signer and (domain == signer or domain.endswith("." + signer)):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class DKIMCheck:
    """DKIM verification of one message, with the lookup it may use (``None``: none)."""

    raw: bytes
    dns: DNSLookup | None

    def aligned(self, domain: str | None) -> bool:
        """Whether a signature aligned with ``domain`` verifies."""
        if not domain or self.dns is None:
            return False
        return verify_dkim(self.raw, domain, self.dns)
