"""The classifier over every message of ``tests/data/corpus`` against ``labels.csv``, and over
the generated family of replies (every client layout and supported language, a request above,
between or below the person's text, or only in the quote or the signature, or negated:
:data:`tests.support.classify_samples.GENERATED`).

What must hold: nobody is opted out who did not ask (zero wrongful opt-outs), every request is
found, and it opts out exactly ``optout_address`` (complaints that name their recipient count
as opt-outs). The envelope sender is the file's ``Return-Path`` (what the receiving server
recorded); the recipient is an ordinary reply address, never a token. The confusion table
(labelled category against classification) is printed.
"""

from __future__ import annotations

import email
from collections import Counter

import pytest

from adapters.addresses import address_key
from inbound.classify import Category
from tests.support.classify_samples import GENERATED, OWN_POSITIONS, layout_reply
from tests.support.mail import REPLIES, classify, corpus_labels, corpus_message

LABELS = corpus_labels()
EXPECTED_CATEGORY = {
    "unsubscribe_mailto": {Category.UNSUBSCRIBE},
    "stop_reply": {Category.UNSUBSCRIBE},
    "human_reply": {Category.OTHER, Category.REVIEW},
    "auto_reply": {Category.AUTO_REPLY},
    "bounce": {Category.BOUNCE},
    "complaint": {Category.COMPLAINT},
}


def _classify(name: str):
    raw = corpus_message(name)
    return_path = email.message_from_bytes(raw).get("Return-Path")
    return classify(raw, rcpt=REPLIES, mail_from=return_path.strip() if return_path else None)


def test_corpus_is_complete() -> None:
    assert len(LABELS) >= 130
    assert {row["category"] for row in LABELS} == set(EXPECTED_CATEGORY)


def test_corpus_confusion_table(capsys: pytest.CaptureFixture[str]) -> None:
    table: Counter[tuple[str, str]] = Counter()
    wrongful, missed, wrong_person, wrong_category = [], [], [], []
    for row in LABELS:
        verdict = _classify(row["file"])
        table[(row["category"], verdict.category.value)] += 1
        if verdict.category not in EXPECTED_CATEGORY[row["category"]]:
            wrong_category.append((row["file"], verdict.category.value, verdict.reason))
        expected = row["expected_optout"] == "yes"
        if verdict.opts_out_someone and not expected:
            wrongful.append((row["file"], verdict.addresses, verdict.reason))
        elif expected and not verdict.opts_out_someone:
            missed.append((row["file"], verdict.category.value, verdict.reason))
        elif expected and address_key(verdict.address or "") != address_key(row["optout_address"]):
            wrong_person.append((row["file"], verdict.address, row["optout_address"]))
        elif expected and len(verdict.addresses) > 1 and verdict.category is not Category.COMPLAINT:
            wrong_person.append((row["file"], verdict.addresses, row["optout_address"]))
    categories = sorted({c for c, _ in table})
    columns = [c.value for c in Category]
    lines = [
        "",
        "corpus confusion table (rows: label, columns: classification)",
        f"{'':20}" + "".join(f"{c:>12}" for c in columns),
    ]
    for category in categories:
        lines.append(f"{category:20}" + "".join(f"{table[(category, c)] or '.':>12}" for c in columns))
    lines.append(
        f"wrongful opt-outs: {len(wrongful)}; requests missed: {len(missed)}; "
        f"wrong person: {len(wrong_person)}; total {len(LABELS)}"
    )
    with capsys.disabled():
        print("\n".join(lines))
    assert not wrongful, wrongful
    assert not missed, missed
    assert not wrong_person, wrong_person
    assert not wrong_category, wrong_category


@pytest.mark.parametrize("row", [r for r in LABELS if r["expected_optout"] == "yes"], ids=lambda r: r["file"])
def test_every_request_names_its_person(row: dict[str, str]) -> None:
    verdict = _classify(row["file"])
    assert verdict.opts_out_someone
    assert address_key(verdict.address or "") == address_key(row["optout_address"])


@pytest.mark.parametrize("row", [r for r in LABELS if r["expected_optout"] == "no"], ids=lambda r: r["file"])
def test_nobody_else_is_opted_out(row: dict[str, str]) -> None:
    assert not _classify(row["file"]).opts_out_someone


def test_ambiguous_scoped_complaint_goes_to_review_at_most() -> None:
    verdict = _classify("human_reply/openbmc_a7b0de203f35.eml")
    assert verdict.category in (Category.REVIEW, Category.OTHER)


def test_generated_replies_in_every_layout_and_language(capsys: pytest.CaptureFixture[str]) -> None:
    """0 wrongful opt-outs, 0 wrong person, 0 crashes; at least 98% of the requests the person
    wrote are found, and the rest go to review, never to ``other``."""
    table: Counter[tuple[str, str]] = Counter()
    wrongful, lost, wrong_person = [], [], []
    for case in GENERATED:
        layout, language, position, form = case
        verdict = classify(layout_reply(layout, language, position, form))
        must = position in OWN_POSITIONS
        row = {"negated": "negated request"}.get(position, f"request {'' if must else 'in '}{position}")
        table[(row, verdict.category.value)] += 1
        if verdict.opts_out_someone and not must:
            wrongful.append((case, verdict.detail))
        elif must and not verdict.opts_out_someone:
            lost.append((case, verdict.category.value, verdict.detail))
        elif must and verdict.addresses != ("jane@example.org",):
            wrong_person.append((case, verdict.addresses))
    requests = sum(1 for case in GENERATED if case[2] in OWN_POSITIONS)
    columns = [c.value for c in Category]
    lines = [
        "",
        "generated replies (rows: where the request is, columns: classification)",
        f"{'':20}" + "".join(f"{c:>12}" for c in columns),
        *(
            f"{row:20}" + "".join(f"{table[(row, c)] or '.':>12}" for c in columns)
            for row in sorted({r for r, _ in table})
        ),
        f"wrongful opt-outs: {len(wrongful)}; requests found: {requests - len(lost)}/{requests}; "
        f"wrong person: {len(wrong_person)}; total {len(GENERATED)}",
    ]
    with capsys.disabled():
        print("\n".join(lines))
    assert not wrongful, wrongful
    assert not wrong_person, wrong_person
    assert len(lost) <= requests * 0.02, lost
    assert all(category == Category.REVIEW.value for _, category, _ in lost), lost
