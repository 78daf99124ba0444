"""Our tokenized unsubscribe addresses: ``unsub-<token>@<one of [smtp].domains>``.

A token arrives as an envelope recipient (the person's mail client used our
``List-Unsubscribe`` ``mailto:``), or inside the reported message of a complaint. A domain
is ours when :func:`~adapters.addresses.normalize_domain` of it is one of ``[smtp].domains``,
which the configuration keeps in that same form: the listener accepts exactly the recipients
the classifier recognizes, international domains included, whether written in Unicode or as
A-labels. Resolving a token is injected (the store's look-up), so this stays pure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection
from typing import Protocol

from adapters.addresses import normalize_domain
from adapters.errors import AddressError, OptOutHubError
from adapters.tokens import TOKEN_LENGTH, token_from_local_part


class TokenTarget(Protocol):
    """What a token resolves to (``adapters.store.models.Recipient`` satisfies it)."""

    @property
    def email(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def campaign(self) -> str: ...


ResolveToken = Callable[[str], TokenTarget | None]  # raises TokenError for forged/unknown

_TOKEN_IN_HEADER = re.compile(
    rf"(?:mailto:\s*unsub-([a-z2-7]{{{TOKEN_LENGTH}}})@([\w.-]+)|/u/([a-z2-7]{{{TOKEN_LENGTH}}})\b)", re.I
)


def is_our_domain(domain: str, domains: Collection[str]) -> bool:
    """Whether ``domain``, as written (any case, Unicode or A-labels, trailing dot), is one of
    the normalized ``domains``."""
    try:
        return normalize_domain(domain) in domains
    except AddressError:
        return False


def recipient_token(address: str, domains: Collection[str]) -> str | None:
    """The token of an envelope recipient ``unsub-<token>@<our domain>`` (any case), else ``None``."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    token = token_from_local_part(local)
    return token if token is not None and is_our_domain(domain, domains) else None


@dataclasses.dataclass(frozen=True)
class Tokens:
    """Our domains and the injected token look-up (``None``: tokens are never resolved)."""

    domains: Collection[str]
    resolve: ResolveToken | None

    def target(self, token: str) -> TokenTarget | None:
        """Whom a token names; ``None`` for a forged or unknown token."""
        if self.resolve is None:
            return None
        try:
            return self.resolve(token)
        except OptOutHubError:
            return None

    def in_list_unsubscribe(self, text: str) -> TokenTarget | None:
        """The recipient named by the first of our tokens in a ``List-Unsubscribe`` value."""
        if self.resolve is None:
            return None
        for match in _TOKEN_IN_HEADER.finditer(text):
            token, domain = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), None)
            if domain is not None and not is_our_domain(domain, self.domains):
                continue
            target = self.target(token.lower())
            if target is not None:
                return target
        return None
