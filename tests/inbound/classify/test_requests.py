"""The request finder (inbound/classify/requests.py), alone and through the classifier: clear
requests in every language, negations, unclear requests, ordinary sentences, the languages
switch."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.config import Config, InboundConfig
from adapters.events import Verification
from inbound.classify import Category
from inbound.classify.requests import Clarity, find_request
from tests.support.mail import classify, message

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
        "We talked about the newsletter yesterday and I think I will unsubscribe at some point, "
        "but first I want to read the article on pricing you mentioned.",
    ],
)
def test_unclear_requests_go_to_review(text: str) -> None:
    verdict = classify(message(text, subject="Re: hello"))
    assert verdict.category is Category.REVIEW
    assert verdict.address == "jane@example.org"
    assert not verdict.opts_out_someone


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
    assert not verdict.opts_out_someone, verdict


AS_PEOPLE_WRITE_THEM = [
    ("en", "Hi, please stop sending me these emails, thanks", "stop sending me these emails"),
    ("en", "take me off", "take me off"),
    ("en", "Take me off your list please", "take me off"),
    ("en", "No more emails please.", "no more emails"),
    ("en", "Please stop these emails", "stop these emails"),
    ("en", "unsubscrible", "unsubscrible"),
    ("en", "Please unsubcribe me", "unsubcribe me"),
    ("en", "unsuscribe", "unsuscribe"),
    ("en", "usubscribe me", "usubscribe me"),
    ("fr", "Plus de mails svp", "plus de mails"),
    ("fr", "désabonement", "desabonement"),
    ("de", "abbestelen", "abbestelen"),
    ("es", "No más correos, gracias", "no mas correos"),
    ("pt", "Não quero mais emails", "nao quero mais emails"),
    ("pt", "descadrastar", "descadrastar"),
    ("it", "Basta email, grazie", "basta email"),
    ("it", "disicrivimi", "disicrivimi"),
    ("ru", "не присылайте мне больше писем", "не присылаите мне больше"),
    ("ru", "отпишите", "отпишите"),
]


@pytest.mark.parametrize(("language", "text", "words"), AS_PEOPLE_WRITE_THEM)
def test_paraphrases_and_misspellings_are_clear_and_quoted_in_the_detail(language: str, text: str, words: str) -> None:
    verdict = classify(message(text, subject="Re: Our spring newsletter"))
    assert verdict.category is Category.UNSUBSCRIBE, (text, verdict)
    assert f"({language}): " in verdict.detail and words in verdict.detail


@pytest.mark.parametrize(
    "text",
    [
        "STOP\n\nI got this from a friend and never signed up.",
        "Unsubscribe\nThanks for the years of good deals, but I moved abroad.",
        "Hello,\n\nunsubscrible\n\nJane",
    ],
)
def test_a_request_on_its_own_line_above_the_persons_paragraph_is_clear(text: str) -> None:
    assert classify(message(text, subject="Re: Spring sale")).category is Category.UNSUBSCRIBE


@pytest.mark.parametrize(
    "text",
    [
        "Don't unsubscribe me",
        "I unsubscribed by mistake, please keep sending",
        "STOP\n\nOops, please don't unsubscribe me, ignore that.",
        "Je n'ai plus de mails de vous depuis mars, est-ce normal ?",
    ],
)
def test_negations_and_reports_never_opt_out(text: str) -> None:
    assert not classify(message(text, subject="Re: Spring sale")).opts_out_someone


def test_a_bare_keyword_deep_in_a_part_is_unclear_not_clear() -> None:
    """An unmarked quote of a newsletter whose footer reads "Unsubscribe": review at most."""
    text = "Thanks, see you Thursday.\nSpring sale starts Monday.\nTwenty percent off.\nNew bikes.\nUnsubscribe"
    match = find_request("", text)
    assert match is not None and match.clarity is Clarity.UNCLEAR
    assert not classify(message(text, subject="Re: Spring sale")).opts_out_someone
