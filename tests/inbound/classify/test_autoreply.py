"""Auto-reply signals (inbound/classify/autoreply.py): automatic messages, lists and robots are
never requests; the three mail clients' List-Unsubscribe messages are."""

from __future__ import annotations

import pytest

from inbound.classify import Category
from tests.support.classify_samples import CLIENTS
from tests.support.mail import DOMAIN, classify, message


@pytest.mark.parametrize("client", CLIENTS)
def test_client_unsubscribe_to_a_plain_address_unsubscribes_the_sender(client: str) -> None:
    shape = CLIENTS[client]
    raw = message(
        shape["body"], subject=shape["subject"], headers=shape.get("headers"), to=f"list-unsubscribe@{DOMAIN}"
    )
    verdict = classify(raw, rcpt=f"list-unsubscribe@{DOMAIN}")
    assert verdict.category is Category.UNSUBSCRIBE, verdict
    assert verdict.address == "jane@example.org"


@pytest.mark.parametrize(
    "headers, subject",
    [
        ({"Auto-Submitted": "auto-replied"}, "Re: unsubscribe"),
        ({"X-Autoreply": "yes"}, "unsubscribe"),
        ({"Precedence": "bulk"}, "Re: newsletter"),
        ({}, "Automatic reply: unsubscribe"),
        ({}, "Réponse automatique : désabonnement"),
        ({}, "自动回复: 退订"),
        ({}, "Out of Office: Re: newsletter"),
        ({"X-Auto-Response-Suppress": "All"}, "Re: newsletter"),
    ],
)
def test_auto_replies_are_never_requests(headers: dict[str, str], subject: str) -> None:
    verdict = classify(
        message(
            "I am out of the office. Please stop by my colleague's desk. Unsubscribe", subject=subject, headers=headers
        )
    )
    assert verdict.category is Category.AUTO_REPLY, verdict


def test_null_sender_is_never_a_request() -> None:
    assert classify(message("unsubscribe", subject="unsubscribe"), mail_from="").category is Category.AUTO_REPLY


def test_list_precedence_does_not_hide_a_relayed_request() -> None:
    raw = message(
        "unsubscribe", subject="unsubscribe", headers={"Precedence": "bulk", "List-Id": "<devs.lists.example.net>"}
    )
    assert classify(raw).category is Category.UNSUBSCRIBE


def test_list_rewritten_from_uses_reply_to() -> None:
    headers = {
        "Reply-To": "Jane Doe <jane@example.org>",
        "List-Id": "<devs.lists.example.net>",
        "List-Post": "<mailto:devs@lists.example.net>",
    }
    raw = message("Please unsubscribe me.", sender="Jane Doe via devs <devs@lists.example.net>", headers=headers)
    verdict = classify(raw, mail_from="devs-bounces@lists.example.net")
    assert (verdict.category, verdict.address) == (Category.UNSUBSCRIBE, "jane@example.org")


def test_list_rewritten_from_without_reply_to_goes_to_review() -> None:
    raw = message(
        "Please unsubscribe me.",
        sender="Jane Doe via devs <devs@lists.example.net>",
        headers={"List-Id": "<devs.lists.example.net>"},
    )
    verdict = classify(raw)
    assert verdict.category is Category.REVIEW and not verdict.opts_out_someone


@pytest.mark.parametrize(
    "sender",
    [
        "no-reply@shop.example",
        "devs-request@lists.example.net",
        "owner-devs@lists.example.net",
        "devs-bounces@lists.example.net",
        "MAILER-DAEMON@mx.example.net",
    ],
)
def test_robots_and_list_addresses_are_never_requests(sender: str) -> None:
    verdict = classify(message("unsubscribe", subject="unsubscribe", sender=sender), mail_from=sender)
    assert not verdict.opts_out_someone
    assert verdict.category in (Category.AUTO_REPLY, Category.BOUNCE)
