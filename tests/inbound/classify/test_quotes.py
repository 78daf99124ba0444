"""The person's own lines of a reply, in the layouts of the major clients (plain text; the
HTML layouts and every language run through the whole classifier in
``test_reply_layouts.py``)."""

from __future__ import annotations

import time

import pytest

from inbound.classify.quotes import own_text

NBSP = "\u00a0"

CASES = {
    "outlook_french_header_block": (
        f"Merci\n\nDe{NBSP}: Newsletter <news@example.com>\nEnvoyé{NBSP}: lundi 5 janvier 2026 10:00\n"
        f"À{NBSP}: Jane <jane@example.org>\nObjet{NBSP}: Offres\n\nDésabonnez-moi ici.",
        "Merci",
    ),
    "outlook_english_separator_and_header_block": (
        "thanks\n________________________________\nFrom: Newsletter <news@example.com>\n"
        "Sent: Monday, January 5, 2026 10:00 AM\nTo: Jane\nSubject: Sale\n\nunsubscribe me",
        "thanks\n________________________________",
    ),
    "original_message_separator": (
        "ok\n\n-----Original Message-----\nFrom: News\nSent: Monday\nTo: Jane\nSubject: Sale\n\nstop",
        "ok",
    ),
    "gmail_attribution_wrapped_over_two_lines": (
        "unsubscribe\n\nOn Mon, Jan 5, 2026 at 10:00 AM Newsletter <\nnews@example.com> wrote:\n\nunsubscribe me now",
        "unsubscribe",
    ),
    "bottom_posting_below_a_quote_and_above_a_signature": (
        "On Mon, Jan 5, 2026, Newsletter wrote:\n> Big sale\n> unsubscribe me\n\n"
        "Please remove me from your list.\n\n-- \nJane\nunsubscribe",
        "Please remove me from your list.",
    ),
    "unmarked_quote_of_the_newsletter_cut_at_its_footer": (
        "Thanks!\n\nSpring sale starts Monday.\nTwenty percent off.\n\n"
        "Unsubscribe | Manage preferences\n© 2026 Shop\n\nunsubscribe me",
        "Thanks!\n\nSpring sale starts Monday.\nTwenty percent off.",
    ),
    "interleaved_answers": (
        "Newsletter wrote:\n> question 1\nanswer 1\n> question 2\nunsubscribe me\n> rest",
        "answer 1\n\n[…]\n\nunsubscribe me",
    ),
    "hungarian_unprefixed_quote": (
        "STOP\n\n2026. jan. 5., H 10:00 Newsletter <news@example.com> írta:\n\nunsubscribe me",
        "STOP",
    ),
    "qq_original_mail_block": (
        '退订\n\n------------------ 原始邮件 ------------------\n发件人: "News"<news@qq.com>;\n'
        '发送时间: 2026年1月5日\n收件人: "jane";\n主题: hi\n\n退订请回复TD',
        "退订",
    ),
    "netease_163_attribution": ('好的\n\n在 2026-01-05 10:00:00，"Newsletter" <news@example.com> 写道：\n退订', "好的"),
    "japanese_attribution": (
        "了解です\n\n2026年1月5日(月) 10:00 Newsletter <news@example.com>:\n\n配信停止",
        "了解です",
    ),
    "naver_original_message": (
        "네\n\n-----Original Message-----\n보낸 사람: News <news@example.com>\n"
        "받는 사람: jane\n제목: hi\n\nunsubscribe",
        "네",
    ),
    "mobile_signature_then_quote": (
        "see you\n\nSent from my iPhone\n\nOn 5 Jan 2026, at 10:00, News <news@example.com> wrote:\n\n> STOP",
        "see you",
    ),
    "forwarded_message_runs_to_the_end": (
        "FYI\n\n---------- Forwarded message ---------\nFrom: News <news@example.com>\nDate: Mon\n\nunsubscribe me",
        "FYI",
    ),
    "cr_only_line_ends": ("yes\r\rOn Mon, News wrote:\r> unsubscribe me\r\rthanks", "yes\n\n[…]\n\nthanks"),
}


@pytest.mark.parametrize("body, expected", CASES.values(), ids=CASES.keys())
def test_own_text_in_each_client_layout(body: str, expected: str) -> None:
    assert own_text(body) == expected


def test_a_paragraph_mentioning_to_and_from_is_the_persons_own() -> None:
    body = "From: me, to: you.\nPlease unsubscribe me"
    assert own_text(body) == body


@pytest.mark.parametrize(
    "body",
    [("On " + "a " * 147 + ":\n") * 100, "ok\n" * 10_000, "From: x\n" * 5_000, "-- \n" + "x\n" * 10_000],
    ids=["long_attribution_like_lines", "many_short_lines", "many_header_lines", "long_signature"],
)
def test_pathological_bodies_are_labelled_in_linear_time(body: str) -> None:
    started = time.perf_counter()
    own_text(body)
    assert time.perf_counter() - started < 5  # ~30 ms on one core; catastrophic backtracking takes minutes


def test_an_unmarked_quote_starts_at_the_heading_that_repeats_the_subject_replied_to() -> None:
    body = "Nice offer, thanks.\n\n*Spring Sale 2026*\nTwenty percent off.\n\nUnsubscribe me"
    assert own_text(body, title="Spring sale  2026") == "Nice offer, thanks."
    assert own_text(body) == body  # without the title nothing marks it
