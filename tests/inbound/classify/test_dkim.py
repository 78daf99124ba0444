"""DKIM (inbound/classify/dkim.py): an aligned, untampered signature verifies a request; the
``honour_unverified_replies`` policy sends unverified ones to review."""

from __future__ import annotations

from dataclasses import replace

from adapters.config import Config, InboundConfig
from adapters.events import Verification
from inbound.classify import Category
from tests.support.mail import classify, dkim_key, message


def test_dkim_signed_request_is_verified() -> None:
    key = dkim_key("example.org")
    raw = key.sign(message("Please unsubscribe me.", subject="Re: news"))
    verdict = classify(raw, dkim_dns=key.dns)
    assert (verdict.category, verdict.verification) == (Category.UNSUBSCRIBE, Verification.DKIM)


def test_dkim_of_another_domain_does_not_verify() -> None:
    key = dkim_key("elsewhere.example")
    raw = key.sign(message("Please unsubscribe me.", subject="Re: news"))
    assert classify(raw, dkim_dns=key.dns).verification is Verification.NONE


def test_tampered_dkim_does_not_verify() -> None:
    key = dkim_key("example.org")
    raw = key.sign(message("Please unsubscribe me.", subject="Re: news")).replace(b"Please", b"PLEASE")
    assert classify(raw, dkim_dns=key.dns).verification is Verification.NONE


def test_unverified_replies_go_to_review_when_not_honoured() -> None:
    config = replace(Config(), inbound=InboundConfig(honour_unverified_replies=False))
    key = dkim_key("example.org")
    unsigned = message("Please unsubscribe me.", subject="Re: news")
    assert classify(unsigned, config=config, dkim_dns=key.dns).category is Category.REVIEW
    assert classify(key.sign(unsigned), config=config, dkim_dns=key.dns).category is Category.UNSUBSCRIBE
