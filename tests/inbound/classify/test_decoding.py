"""Decoding and new-text extraction (inbound/classify/decoding.py), through the classifier:
quoted footers, signatures and instructions, HTML quotes, forwarded mail, charsets and
transfer encodings, encoded words, malformed MIME."""

from __future__ import annotations

import pytest

from inbound.classify import Category
from inbound.classify.requests import find_request
from tests.support.mail import REPLIES, classify, message, raw_message

QUOTED_FOOTER = """Thanks, see you on Tuesday!

On Mon, 3 Jun 2024 at 10:00, Shop News <news@shop.example> wrote:
> Our spring sale starts now.
>
> To stop receiving these emails, unsubscribe here: https://shop.example/u/abc
> Unsubscribe | Manage preferences
"""


SIGNATURE = """Sounds good, I'll send the files tomorrow.

--
Jane Doe
Sent from my phone. To unsubscribe from my newsletter reply STOP.
"""


OUTLOOK_QUOTE = """Great, thank you.

________________________________
From: Shop News <news@shop.example>
Sent: Monday, June 3, 2024 10:00 AM
To: Jane Doe <jane@example.org>
Subject: Spring sale

If you no longer wish to receive these emails, unsubscribe.
Unsubscribe<https://shop.example/unsubscribe?u=jane@example.org>
"""


INSTRUCTIONS = """Hi Bob,

you can unsubscribe using the link at the bottom of every issue, or send an email with the \
subject "unsubscribe" to the list robot.

Cheers, Jane
"""


LIST_FOOTER = """Does anyone have the schematics for rev B?
_______________________________________________
devs mailing list -- devs@lists.example.net
To unsubscribe send an email to devs-leave@lists.example.net
"""


@pytest.mark.parametrize("body", [QUOTED_FOOTER, SIGNATURE, OUTLOOK_QUOTE, INSTRUCTIONS, LIST_FOOTER])
def test_quoted_footers_signatures_and_instructions_are_not_requests(body: str) -> None:
    verdict = classify(message(body, subject="Re: Spring sale"))
    assert verdict.category is Category.OTHER, verdict


def test_html_quote_is_not_a_request() -> None:
    html = '<div>Sure, works for me.</div><div class="gmail_quote"><blockquote>To unsubscribe click <a href="https://x.example/u">here</a></blockquote></div>'
    verdict = classify(message("", subject="Re: meeting", html=html))
    assert verdict.category is Category.OTHER


def test_request_above_a_quoted_footer_is_found() -> None:
    body = "Please remove me from this list.\n\n" + QUOTED_FOOTER.split("\n", 2)[2]
    verdict = classify(message(body, subject="Re: Spring sale"))
    assert verdict.category is Category.UNSUBSCRIBE


FORWARD = """FYI, thought you would like this offer.

---------- Forwarded message ---------
From: Shop News <news@shop.example>
Date: Mon, Jun 3, 2024 at 10:00 AM
Subject: Spring sale
To: <ann@example.com>

Our spring sale starts now. Unsubscribe me? Click here to unsubscribe.
Please remove me from your mailing list.
"""


def test_forwarded_content_never_counts_and_never_names_the_original_recipient() -> None:
    verdict = classify(message(FORWARD, subject="Fwd: Spring sale", sender="Bob <bob@example.net>"))
    assert verdict.category is Category.OTHER
    assert "ann@example.com" not in verdict.addresses


def test_forwarder_who_asks_is_the_requester() -> None:
    body = "Please unsubscribe me, I only wanted the first one.\n\n" + FORWARD.split("\n", 2)[2]
    verdict = classify(message(body, subject="Fwd: Spring sale", sender="Bob <bob@example.net>"))
    assert (verdict.category, verdict.address) == (Category.UNSUBSCRIBE, "bob@example.net")


def test_message_forwarded_as_attachment_is_not_read() -> None:
    inner = message("Please unsubscribe me.", subject="unsubscribe", sender="ann@example.com")
    outer = raw_message(
        f"""From: Bob <bob@example.net>
To: {REPLIES}
Subject: Fwd: look at this
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

What do you make of this one?
--b1
Content-Type: message/rfc822

{inner.decode().replace(chr(13), "")}
--b1--
"""
    )
    verdict = classify(outer)
    assert verdict.category is Category.OTHER


CHARSETS = [
    ("iso-8859-1", "quoted-printable", "Je souhaite me désabonner, merci."),
    ("windows-1251", "base64", "Отпишите меня, пожалуйста."),
    ("koi8-r", "quoted-printable", "Прошу удалить мой адрес из рассылки."),
    ("gb2312", "base64", "我要退订，谢谢"),
    ("big5", "base64", "請取消訂閱"),
    ("shift_jis", "base64", "配信停止をお願いします。"),
    ("iso-2022-jp", "base64", "配信停止をお願いします。"),
    ("windows-1256", "quoted-printable", "إلغاء الاشتراك"),
    ("iso-8859-15", "base64", "Bitte melden Sie mich ab, Grüße"),
]


@pytest.mark.parametrize(("charset", "cte", "text"), CHARSETS)
def test_non_utf8_charsets_in_base64_and_quoted_printable(charset: str, cte: str, text: str) -> None:
    raw = message(text, subject="Re: news", charset=charset, cte=cte)
    assert text.encode("utf-8") not in raw  # really encoded
    verdict = classify(raw)
    assert verdict.category is Category.UNSUBSCRIBE, (charset, verdict)


def test_mislabelled_charset_is_read_as_utf8() -> None:
    raw = (
        b"From: jane@example.org\r\nSubject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "退订\r\n".encode()
    )
    assert classify(raw).category is Category.UNSUBSCRIBE


def test_encoded_word_subject() -> None:
    raw = raw_message("From: jane@example.org\nSubject: =?UTF-8?B?0J7RgtC/0LjRgdCw0YLRjNGB0Y8=?=\n\n")
    assert find_request("Отписаться", "") is not None
    assert classify(raw).category is Category.UNSUBSCRIBE


MALFORMED = {
    "no boundary": b"From: jane@example.org\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nunsubscribe\r\n",
    "unclosed boundary": b'From: jane@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nhello there\r\n",
    "broken base64": b"From: jane@example.org\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"@@@not base64!!!\r\n",
    "binary garbage": bytes(range(256)) * 4,
    "empty": b"",
    "headers only": b"From: jane@example.org\r\nSubject: hello\r\n",
    "no headers": b"\r\n\r\nhello world\r\n",
    "8-bit header": b"From: J\xe9r\xf4me <jerome@example.org>\r\nSubject: caf\xe9 \xff\xfe\r\n\r\nbonjour\r\n",
    "bad address": b"From: <<<@@@>>>\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n",
    "unknown charset": b"From: jane@example.org\r\nContent-Type: text/plain; charset=x-unknown-42\r\n\r\nhello\r\n",
    "deep nesting": b'From: jane@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    + b"".join(b'--b\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' for _ in range(3000))
    + b"--b--\r\n",
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_mime_never_raises(name: str) -> None:
    verdict = classify(MALFORMED[name])
    assert verdict.category in (Category.OTHER, Category.REVIEW, Category.AUTO_REPLY), verdict
    assert not verdict.opts_out_someone


def test_no_sender_means_review_not_an_opt_out() -> None:
    verdict = classify(MALFORMED["bad address"], mail_from="someone@example.org")
    assert verdict.category is Category.REVIEW
    assert not verdict.opts_out_someone
