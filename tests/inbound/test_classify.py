"""The classifier on messages built here: languages, negations, quoted footers, the three mail
clients' unsubscribe messages, tokens, forwarded mail, charsets, malformed MIME, policy."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest

from adapters.config import Config, InboundConfig
from adapters.errors import TokenError
from adapters.events import Verification
from adapters.tokens import TokenSigner
from inbound.classify import Category, Envelope, classify_message
from inbound.replies import Clarity, find_request
from tests.support.mail import DOMAIN, REPLIES, classify, dkim_key, message, raw_message


@dataclasses.dataclass(frozen=True)
class Target:
    email: str
    topic: str = ""
    campaign: str = ""


SIGNER = TokenSigner([b"unit-test-token-secret-0123456789"])
TARGETS = {7: Target("ann@example.com", "newsletter", "spring-sale"), 8: Target("bob@example.net")}
UNKNOWN_TOKEN = SIGNER.issue(99)


def resolve(token: str) -> Target:
    target = TARGETS.get(SIGNER.verify(token))
    if target is None:
        raise TokenError("unknown token")
    return target


def token_address(recipient_id: int = 7) -> str:
    return f"unsub-{SIGNER.issue(recipient_id)}@{DOMAIN}"


# --- requests in every language ----------------------------------------------------------

REQUESTS = [
    ("en", "Please unsubscribe me from this list."),
    ("en", "STOP"),
    ("en", "Remove me from your mailing list, thanks."),
    ("en", "I no longer wish to receive these emails."),
    ("en", "Opt me out please"),
    ("zh", "退订"),
    ("zh", "我要退订，谢谢"),
    ("zh", "取消订阅"),
    ("ar", "إلغاء الاشتراك"),
    ("ar", "أرجو إلغاء اشتراكي من القائمة"),
    ("es", "Por favor, quiero darme de baja."),
    ("es", "No deseo recibir más correos."),
    ("pt", "Quero cancelar a minha inscrição."),
    ("pt", "Por favor, me remova da lista."),
    ("fr", "Merci de me désabonner."),
    ("fr", "Je ne souhaite plus recevoir vos e-mails."),
    ("de", "Bitte melden Sie mich vom Newsletter ab."),
    ("de", "Ich möchte keine E-Mails mehr erhalten."),
    ("it", "Vorrei disiscrivermi, grazie."),
    ("it", "Non voglio più ricevere queste email."),
    ("nl", "Schrijf mij uit van de nieuwsbrief."),
    ("nl", "Graag afmelden."),
    ("ja", "配信停止をお願いします。"),
    ("ja", "メルマガの購読を解除してください。"),
    ("ru", "Отпишите меня, пожалуйста."),
    ("ru", "Прошу удалить мой адрес из рассылки."),
]


@pytest.mark.parametrize(("language", "text"), REQUESTS)
def test_a_clear_request_in_every_language(language: str, text: str) -> None:
    match = find_request("", text)
    assert match is not None and match.clarity is Clarity.CLEAR, (language, text, match)
    verdict = classify(message(text, subject="Re: Our spring newsletter"))
    assert verdict.category is Category.UNSUBSCRIBE
    assert verdict.address == "jane@example.org"
    assert verdict.verification is Verification.NONE


NEGATED = [
    "Please don't unsubscribe me, I love these emails.",
    "Do not remove me from the list.",
    "不要退订我",
    "لا أريد إلغاء الاشتراك",
    "No me den de baja, por favor.",
    "Não quero cancelar a inscrição.",
    "Ne me désabonnez pas.",
    "Bitte melden Sie mich nicht ab.",
    "Non disiscrivermi.",
    "Schrijf me niet uit.",
    "配信停止しないでください。",
    "Не отписывайте меня.",
]


@pytest.mark.parametrize("text", NEGATED)
def test_negations_are_not_requests(text: str) -> None:
    verdict = classify(message(text, subject="Re: newsletter"))
    assert verdict.category is Category.OTHER, verdict


def test_a_negated_body_makes_a_bare_subject_unclear() -> None:
    verdict = classify(
        message("Please don't unsubscribe me, my colleague sent that by mistake.", subject="unsubscribe")
    )
    assert verdict.category is Category.REVIEW


def test_languages_switch_limits_what_is_understood() -> None:
    config = replace(Config(), inbound=InboundConfig(languages=("en",)))
    assert classify(message("Quiero darme de baja."), config=config).category is Category.OTHER
    assert classify(message("Quiero darme de baja.")).category is Category.UNSUBSCRIBE


@pytest.mark.parametrize(
    "text",
    [
        "Can you please stop sending me the invoices for the old account?",
        "unsubscribe? I am not sure what this list is. Who added me and what is it about, and how often will it come?",
        "How do I unsubscribe?",
        "I unsubscribed by mistake, please keep me",
        "Cancel",
        "We talked about the newsletter yesterday and I think I will unsubscribe at some point, but first I want to read the article on pricing you mentioned.",
    ],
)
def test_unclear_requests_go_to_review(text: str) -> None:
    verdict = classify(message(text, subject="Re: hello"))
    assert verdict.category is Category.REVIEW
    assert verdict.address == "jane@example.org"
    assert not verdict.opts_out


@pytest.mark.parametrize(
    "text",
    [
        "Please remove the old file from the repo.",
        "We need to remove the duplicate emails from the database.",
        "I would like to opt out of the meeting on Friday.",
        "I want to be removed from the CC of this thread.",
        "Stop by my office tomorrow.",
        "Could you drop me a line when you are back?",
        "Remove me as a reviewer on this PR.",
        "Ich möchte mich anmelden.",
        "Quiero darme de alta.",
    ],
)
def test_ordinary_sentences_opt_nobody_out(text: str) -> None:
    verdict = classify(message(text, subject="Re: hello"))
    assert not verdict.opts_out, verdict


# --- quoted footers, signatures and instructions never count --------------------------------

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

you can unsubscribe using the link at the bottom of every issue, or send an email with the subject "unsubscribe" to the list robot.

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


# --- the three mail clients' List-Unsubscribe messages ------------------------------------

GMAIL = dict(body="This message was automatically generated by Gmail.", subject="Unsubscribe")
APPLE = dict(
    body="Apple Mail sent this email to unsubscribe from the message “Spring sale”.",
    subject="unsubscribe",
    headers={"Auto-Submitted": "auto-replied", "X-Apple-Unsubscribe": "true"},
)
OUTLOOK = dict(
    body="",
    subject="Unsubscribe",
    headers={"Thread-Index": "AQHa1b2c3d4e5f6g7h8i9j0k", "X-MS-Has-Attach": "", "X-Auto-Response-Suppress": "All"},
)
CLIENTS = {"gmail": GMAIL, "apple": APPLE, "outlook": OUTLOOK}


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


@pytest.mark.parametrize("client", CLIENTS)
def test_client_unsubscribe_to_a_plain_address_unsubscribes_the_sender(client: str) -> None:
    shape = CLIENTS[client]
    raw = message(
        shape["body"], subject=shape["subject"], headers=shape.get("headers"), to=f"list-unsubscribe@{DOMAIN}"
    )
    verdict = classify(raw, rcpt=f"list-unsubscribe@{DOMAIN}")
    assert verdict.category is Category.UNSUBSCRIBE, verdict
    assert verdict.address == "jane@example.org"


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
        assert not verdict.opts_out
        assert verdict.address == "jane@example.org"  # the candidate, for the admin


def test_token_at_a_foreign_domain_is_not_a_token() -> None:
    rcpt = f"unsub-{SIGNER.issue(7)}@elsewhere.example"
    verdict = classify(message("unsubscribe"), rcpt=rcpt, resolve_token=resolve)
    assert verdict.address == "jane@example.org"


# --- forwarded messages ----------------------------------------------------------------------

FORWARD = """FYI, thought you would like this offer.

---------- Forwarded message ---------
From: Shop News <news@shop.example>
Date: Mon, Jun 3, 2024 at 10:00 AM
Subject: Spring sale
To: <ann@example.com>

Our spring sale starts now. Unsubscribe me? Click here to unsubscribe.
Please remove me from your mailing list.
"""


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("Please unsubscribe my colleague bob@example.com, he left the company.", "Re: hello"),
        ("Unsubscribe me and my wife Anna@Example.com please", "Re: hello"),
        ("Please remove <mailto:old.address@example.net> from your list.", "Re: hello"),
        ("退订 zhang.wei@example.cn", "Re: hello"),
    ],
)
def test_a_request_naming_someone_else_goes_to_review(text: str, subject: str) -> None:
    """The sender asks for another address: opting out the sender would be the wrong person,
    and the other address has not asked. An admin decides."""
    verdict = classify(message(text, subject=subject))
    assert (verdict.category, verdict.address, verdict.reason) == (
        Category.REVIEW,
        "jane@example.org",
        "the request names another address",
    )
    assert not verdict.opts_out


def test_a_request_naming_the_sender_or_the_unsubscribe_address_still_counts() -> None:
    for text in (
        "Please unsubscribe Jane@Example.org from everything.",
        f"Please unsubscribe me, as I asked {REPLIES} before.",
        "Please unsubscribe me from devs-request@lists.example.net",
    ):
        verdict = classify(message(text, subject="Re: hello"))
        assert (verdict.category, verdict.address) == (Category.UNSUBSCRIBE, "jane@example.org"), text


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


# --- charsets and transfer encodings -----------------------------------------------------------

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
        b"From: jane@example.org\r\nSubject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "退订\r\n".encode()
    )
    assert classify(raw).category is Category.UNSUBSCRIBE


def test_encoded_word_subject() -> None:
    raw = raw_message("From: jane@example.org\nSubject: =?UTF-8?B?0J7RgtC/0LjRgdCw0YLRjNGB0Y8=?=\n\n")
    assert find_request("Отписаться", "") is not None
    assert classify(raw).category is Category.UNSUBSCRIBE


# --- malformed MIME: stored, classified other/review, never an exception -----------------------

MALFORMED = {
    "no boundary": b"From: jane@example.org\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nunsubscribe\r\n",
    "unclosed boundary": b'From: jane@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello there\r\n',
    "broken base64": b"From: jane@example.org\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@not base64!!!\r\n",
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
    assert not verdict.opts_out


def test_no_sender_means_review_not_an_opt_out() -> None:
    verdict = classify(MALFORMED["bad address"], mail_from="someone@example.org")
    assert verdict.category is Category.REVIEW
    assert not verdict.opts_out


# --- automatic messages, lists and robots ------------------------------------------------------


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
    assert verdict.category is Category.REVIEW and not verdict.opts_out


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
    assert not verdict.opts_out
    assert verdict.category in (Category.AUTO_REPLY, Category.BOUNCE)


# --- complaints: the token in the reported message ------------------------------------------------


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


# --- verification and policy ----------------------------------------------------------------------


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


def test_classification_result_json_has_the_agreed_keys() -> None:
    result = classify(message("unsubscribe")).as_result()
    assert {"classification", "address", "scope", "verification", "campaign", "reason", "detail"} <= set(result)
    assert result["classification"] == "unsubscribe" and result["verification"] == "none"


def test_envelope_type_is_a_plain_value() -> None:
    verdict = classify_message(message("STOP"), Envelope("jane@example.org", [REPLIES]), config=Config())
    assert verdict.category is Category.UNSUBSCRIBE
