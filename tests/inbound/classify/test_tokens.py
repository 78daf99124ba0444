"""Our tokenized unsubscribe addresses (inbound/classify/tokens.py): a valid token honoured
for its recipient whatever the message says, in any case and with the domain in Unicode or
A-label form; forged, unknown and foreign-domain tokens never."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.config import Config, SMTPConfig
from adapters.events import Verification
from inbound.classify import Category
from tests.support.classify_samples import CLIENTS, SIGNER, UNKNOWN_TOKEN, resolve, token_address
from tests.support.mail import DOMAIN, classify, message


@pytest.mark.parametrize("client", CLIENTS)
def test_client_unsubscribe_to_a_token_address(client: str) -> None:
    shape = CLIENTS[client]
    raw = message(
        shape["body"],
        subject=shape["subject"],
        headers=shape.get("headers"),
        sender="Someone Else <someone@example.net>",
        to=token_address(7),
    )
    verdict = classify(raw, rcpt=token_address(7), resolve_token=resolve)
    assert verdict.category is Category.UNSUBSCRIBE
    assert verdict.address == "ann@example.com"  # the token's recipient, not the From
    assert verdict.scope == "topic:newsletter"
    assert verdict.verification is Verification.TOKEN
    assert verdict.campaign == "spring-sale"


@pytest.mark.parametrize("transform", [str.lower, str.upper, lambda a: a])
def test_token_survives_case_folding(transform) -> None:
    verdict = classify(message("unsubscribe"), rcpt=transform(token_address(8)), resolve_token=resolve)
    assert (verdict.category, verdict.address, verdict.scope) == (Category.UNSUBSCRIBE, "bob@example.net", "global")


def test_token_wins_over_auto_reply_wording() -> None:
    raw = message(
        "This is an automatically generated message.",
        subject="Automatic reply: unsubscribe",
        headers={"Auto-Submitted": "auto-replied"},
    )
    verdict = classify(raw, rcpt=token_address(8), resolve_token=resolve)
    assert verdict.category is Category.UNSUBSCRIBE


def test_forged_and_unknown_tokens_are_never_honoured() -> None:
    forged = token_address(7)
    forged = forged[:10] + ("a" if forged[10] != "a" else "b") + forged[11:]
    for rcpt in (forged, f"unsub-{UNKNOWN_TOKEN}@{DOMAIN}"):
        verdict = classify(message("unsubscribe", subject="unsubscribe"), rcpt=rcpt, resolve_token=resolve)
        assert verdict.category is Category.REVIEW
        assert not verdict.opts_out_someone
        assert verdict.address == "jane@example.org"  # the candidate, for the admin


def test_token_at_a_foreign_domain_is_not_a_token() -> None:
    rcpt = f"unsub-{SIGNER.issue(7)}@elsewhere.example"
    verdict = classify(message("unsubscribe"), rcpt=rcpt, resolve_token=resolve)
    assert verdict.address == "jane@example.org"


@pytest.mark.parametrize(
    "domain", ["bücher.example", "BÜCHER.example", "xn--bcher-kva.example", "XN--BCHER-KVA.example."]
)
def test_token_at_an_international_domain_in_either_form(domain: str) -> None:
    """``[smtp].domains`` in Unicode; the recipient's domain in Unicode or A-labels, any case."""
    config = replace(Config(), smtp=SMTPConfig(domains=("bücher.example",)))
    verdict = classify(message("unsubscribe"), rcpt=token_address(8, domain), config=config, resolve_token=resolve)
    assert (verdict.category, verdict.address, verdict.verification) == (
        Category.UNSUBSCRIBE,
        "bob@example.net",
        Verification.TOKEN,
    )
