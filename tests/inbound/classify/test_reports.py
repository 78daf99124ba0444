"""Reports (inbound/classify/reports.py): a complaint's person from the report's own fields,
else from our token in the reported message. (Bounces and more complaints: the corpus.)"""

from __future__ import annotations

import pytest

from adapters.events import Verification
from inbound.classify import Category
from tests.support.classify_samples import SIGNER, resolve, token_address
from tests.support.mail import DOMAIN, classify, corpus_message, raw_message


def _arf(rcpt_line: str, reported_to: str) -> bytes:
    return raw_message(
        f"""From: feedback@fbl.example.net
To: fbl@{DOMAIN}
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="r"

--r
Content-Type: text/plain

This is an abuse report.
--r
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Test/1.0
Version: 1
{rcpt_line}
--r
Content-Type: message/rfc822

From: News <news@shop.example>
To: {reported_to}
Subject: Spring sale
List-Unsubscribe: <mailto:{token_address(7)}>, <https://{DOMAIN}/u/{SIGNER.issue(7)}>

Buy now.
--r--
"""
    )


def test_complaint_recipient_from_our_token_when_the_report_hides_it() -> None:
    verdict = classify(_arf("", "undisclosed-recipients:;"), resolve_token=resolve)
    assert (verdict.category, verdict.address, verdict.verification) == (
        Category.COMPLAINT,
        "ann@example.com",
        Verification.TOKEN,
    )


def test_complaint_original_rcpt_to_wins_over_the_token() -> None:
    verdict = classify(_arf("Original-Rcpt-To: carol@example.org", "carol@example.org"), resolve_token=resolve)
    assert (verdict.address, verdict.verification) == ("carol@example.org", Verification.NONE)


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])
def test_a_bounce_reads_the_same_whatever_its_line_ends(eol: bytes) -> None:
    raw = corpus_message("bounce/reconstructed_qmail_cr_only.eml").replace(b"\r", b"\n").replace(b"\n", eol)
    verdict = classify(raw, mail_from="")
    assert verdict.category is Category.BOUNCE
    assert verdict.addresses == ("olga.petrova@legacy.example",)


def test_inline_hotmail_complaint_with_our_token_names_the_tokens_recipient() -> None:
    raw = raw_message(
        f"""X-HmXmrOriginalRecipient: <someone@hotmail.com>
From: Shop <news@shop.example>
To: someone@hotmail.com
Subject: Spring sale
List-Unsubscribe: <mailto:{token_address(8)}>

Our spring sale starts Monday."""
    )
    verdict = classify(raw, resolve_token=resolve)
    assert verdict.category is Category.COMPLAINT
    assert verdict.address == "bob@example.net"
    assert verdict.verification is Verification.TOKEN
