"""The order of decisions (inbound/classify/__init__.py): a request that names someone else
goes to review, one naming the sender or our own address counts; the result's JSON and the
plain envelope type."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import storable
from adapters.config import Config
from inbound.classify import Category, Classification, Envelope, classify_message
from tests.support import hostile
from tests.support.classify_samples import UNKNOWN_TOKEN, resolve, token_address
from tests.support.mail import DOMAIN, REPLIES, classify, message, no_dns


@pytest.mark.parametrize(
    ("text", "subject", "named"),
    [
        ("Please unsubscribe my colleague bob@example.com, he left the company.", "Re: hello", "bob@example.com"),
        ("Unsubscribe me and my wife Anna@Example.com please", "Re: hello", "anna@example.com"),
        ("Please remove <mailto:old.address@example.net> from your list.", "Re: hello", "old.address@example.net"),
        ("退订 zhang.wei@example.cn", "Re: hello", "zhang.wei@example.cn"),
    ],
)
def test_a_request_naming_someone_else_goes_to_review(text: str, subject: str, named: str) -> None:
    """The sender asks for another address: opting out the sender would be the wrong person,
    and the other address has not asked. An admin decides, offered both addresses."""
    verdict = classify(message(text, subject=subject))
    assert (verdict.category, verdict.address, verdict.reason) == (
        Category.REVIEW,
        "jane@example.org",
        "the request names another address",
    )
    assert verdict.named == (named,) and verdict.as_result()["named"] == [named]
    assert not verdict.opts_out_someone


def test_a_request_naming_the_sender_or_the_unsubscribe_address_still_counts() -> None:
    for text in (
        "Please unsubscribe Jane@Example.org from everything.",
        f"Please unsubscribe me, as I asked {REPLIES} before.",
        "Please unsubscribe me from devs-request@lists.example.net",
    ):
        verdict = classify(message(text, subject="Re: hello"))
        assert (verdict.category, verdict.address) == (Category.UNSUBSCRIBE, "jane@example.org"), text


def test_classification_result_json_has_the_agreed_keys() -> None:
    result = classify(message("unsubscribe")).as_result()
    assert {"classification", "address", "scope", "verification", "campaign", "reason", "detail"} <= set(result)
    assert result["classification"] == "unsubscribe" and result["verification"] == "none"


def test_envelope_type_is_a_plain_value() -> None:
    verdict = classify_message(message("STOP"), Envelope("jane@example.org", [REPLIES]), config=Config())
    assert verdict.category is Category.UNSUBSCRIBE


ENVELOPE_SENDERS = st.none() | st.just("") | hostile.TEXT | st.just("jane@example.org")
RECIPIENTS = st.sampled_from([REPLIES, token_address(7), token_address(8), f"unsub-{UNKNOWN_TOKEN}@{DOMAIN}"]) | (
    hostile.TEXT
)


@given(hostile.messages(), ENVELOPE_SENDERS, st.lists(RECIPIENTS, max_size=3))
def test_any_bytes_or_mime_get_a_classification(raw: bytes, mail_from: str | None, rcpt_tos: list[str]) -> None:
    """Arbitrary bytes, broken MIME, hostile headers and envelopes: a Classification whose
    result the store takes, never an exception (the classification thread would send the
    message to review instead of reading it)."""
    verdict = classify_message(
        raw, Envelope(mail_from, tuple(rcpt_tos)), config=Config(), resolve_token=resolve, dkim_dns=no_dns
    )
    assert isinstance(verdict, Classification)
    assert not storable.REFUSED.search(json.dumps(verdict.as_result(), ensure_ascii=False))
