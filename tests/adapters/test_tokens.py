"""Unsubscribe tokens: round trip, forgery, rotation, case folding, length; the recipients table."""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from adapters.config import Config
from adapters.errors import PayloadError, TokenError
from adapters.hub import Hub
from adapters.store.models import Recipient, RecipientCount
from adapters.store.recipients import RecipientRequest, issue_tokens, resolve_token
from adapters.tokens import MAILTO_PREFIX, TOKEN_LENGTH, TokenSigner, token_from_local_part, unsubscribe_headers
from tests.support import hostile

OLD = b"old-secret-0123456789abcdef"
NEW = b"new-secret-0123456789abcdef"


@given(st.integers(min_value=1, max_value=2**48 - 1))
def test_round_trip_any_case(recipient_id: int) -> None:
    signer = TokenSigner([NEW])
    token = signer.issue(recipient_id)
    assert len(token) == TOKEN_LENGTH and token == token.lower()
    assert signer.verify(token) == recipient_id
    assert signer.verify(token.upper()) == recipient_id
    assert signer.verify(token.swapcase()) == recipient_id


def test_every_single_character_change_is_rejected() -> None:
    signer = TokenSigner([NEW])
    token = signer.issue(424242)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for i, ch in enumerate(token):
        for other in alphabet:
            if other == ch:
                continue
            forged = token[:i] + other + token[i + 1 :]
            with pytest.raises(TokenError):
                signer.verify(forged)


def test_forged_tokens_with_other_ids_and_wrong_keys() -> None:
    signer = TokenSigner([NEW])
    raw = bytearray(base64.b32decode(signer.issue(7).upper() + "===="))
    raw[6] = 8  # change the recipient id, keep the MAC
    forged = base64.b32encode(bytes(raw)).decode().rstrip("=").lower()
    with pytest.raises(TokenError):
        signer.verify(forged)
    with pytest.raises(TokenError):
        TokenSigner([OLD]).verify(signer.issue(7))
    for junk in ["", "short", "!" * TOKEN_LENGTH, "a" * (TOKEN_LENGTH + 1), "1" * TOKEN_LENGTH]:
        with pytest.raises(TokenError):
            signer.verify(junk)


def test_rotation_keeps_old_tokens_valid() -> None:
    old_token = TokenSigner([OLD]).issue(99)
    rotated = TokenSigner([NEW, OLD])
    assert rotated.verify(old_token) == 99
    new_token = rotated.issue(99)
    assert new_token != old_token
    assert TokenSigner([NEW]).verify(new_token) == 99
    with pytest.raises(TokenError):
        TokenSigner([NEW]).verify(old_token)  # once the old key is retired


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenSigner([b"short"])


def test_local_part_parsing() -> None:
    token = TokenSigner([NEW]).issue(5)
    assert token_from_local_part(f"{MAILTO_PREFIX}{token}") == token
    assert token_from_local_part(f"UNSUB-{token.upper()}") == token
    assert token_from_local_part("unsub-") is None
    assert token_from_local_part(f"other-{token}") is None


def test_headers_shape() -> None:
    lu, lup = unsubscribe_headers("t" * TOKEN_LENGTH, mail_domain="u.example.com", public_url="https://u.example.com/")
    assert lu == f"<mailto:unsub-{'t' * TOKEN_LENGTH}@u.example.com>, <https://u.example.com/u/{'t' * TOKEN_LENGTH}>"
    assert lup == "List-Unsubscribe=One-Click"


@pytest.fixture
def topics_config(make_config) -> Config:
    return make_config({"topics": [{"name": "news"}, {"name": "a-very-long-topic-name-" + "x" * 60}]})


def test_recipients_resolve_and_are_idempotent(make_hub, topics_config: Config) -> None:
    hub: Hub = make_hub(topics_config)
    long_topic = topics_config.topics[1].name
    campaigns = [None, "c1", "spring-2026-" + "y" * 180]
    requests = [
        RecipientRequest(email, topic, campaign)
        for email, topic, campaign in itertools.product(
            ["Ann@Example.com", "ann@example.com", "zed@example.org"], [None, "news", long_topic], campaigns
        )
    ]
    with hub.sessions.begin() as session:
        first = issue_tokens(session, hub.signer, topics_config, requests, now=hub.clock())
    with hub.sessions.begin() as session:
        second = issue_tokens(session, hub.signer, topics_config, requests, now=hub.clock())
    assert [h.token for h in first] == [h.token for h in second]
    # Ann@ and ann@ are the same recipient: same token for the same topic and campaign.
    assert first[0].token == first[len(campaigns) * 3].token
    for issued, req in zip(first, requests, strict=True):
        local = issued.list_unsubscribe.split("mailto:")[1].split("@")[0]
        assert len(local.encode()) <= 64
        with hub.sessions() as session:
            recipient = resolve_token(session, hub.signer, issued.token.upper())
        assert recipient.email_key == req.email.lower()
        assert recipient.topic == (req.topic or "") and recipient.campaign == (req.campaign or "")


def distinct_addresses(session: Session) -> dict[tuple[str, str], int]:
    """What ``recipient_counts`` must hold, counted from the recipient rows themselves."""
    truth = {}
    for kind, column in (("campaign", Recipient.campaign), ("topic", Recipient.topic)):
        stmt = select(column, func.count(distinct(Recipient.email_key))).where(column != "").group_by(column)
        truth.update({(kind, name): n for name, n in session.execute(stmt)})
    return truth


def test_recipient_counts_follow_first_issues_only(make_hub, topics_config: Config) -> None:
    hub: Hub = make_hub(topics_config)
    long_topic = topics_config.topics[1].name
    batches = [
        [
            RecipientRequest(e, t, c)
            for e, t, c in itertools.product(
                ["Ann@Example.com", "ann@example.com", "zed@example.org"], [None, "news", long_topic], [None, "c1"]
            )
        ],
        [RecipientRequest("ann@example.com", "news", "c1")],  # issued again: nothing new
        [
            RecipientRequest("bo@example.net", "news", "c1"),
            RecipientRequest("bo@example.net", long_topic, "c1"),
        ],  # one address, two topics
        [RecipientRequest("zed@example.org", None, "c2")],  # known address, new campaign
    ]
    for batch in batches:
        with hub.sessions.begin() as session:
            issue_tokens(session, hub.signer, topics_config, batch, now=hub.clock())
    with hub.sessions() as session:
        counted = {(c.kind, c.name): c.addresses for c in session.scalars(select(RecipientCount))}
        assert counted == distinct_addresses(session)
    assert counted == {("campaign", "c1"): 3, ("campaign", "c2"): 1, ("topic", "news"): 3, ("topic", long_topic): 3}


def test_unknown_recipient_and_bad_requests(hub: Hub, config: Config) -> None:
    with hub.sessions() as session, pytest.raises(TokenError, match="unknown"):
        resolve_token(session, hub.signer, hub.signer.issue(123456))
    with hub.sessions.begin() as session:
        with pytest.raises(PayloadError, match="unknown topic"):
            issue_tokens(session, hub.signer, config, [RecipientRequest("a@example.com", "nope")], now=hub.clock())
        with pytest.raises(PayloadError):
            issue_tokens(session, hub.signer, config, [RecipientRequest("not an address")], now=hub.clock())


@given(hostile.TEXT | st.text("abcdefghijklmnopqrstuvwxyz234567ABC=", min_size=TOKEN_LENGTH, max_size=TOKEN_LENGTH))
def test_arbitrary_strings_raise_only_token_error(text: str) -> None:
    """Any string, of the token's alphabet and length or not, is refused with TokenError (a
    forgery has a 2**-80 chance), and its mailto local part yields a token or nothing."""
    with pytest.raises(TokenError):
        TokenSigner([NEW]).verify(text)
    token = token_from_local_part(MAILTO_PREFIX + text)
    assert token is None or token == text.lower()


@given(st.integers(min_value=1, max_value=2**48 - 1), st.data())
def test_any_bit_flipped_is_detected(recipient_id: int, data: st.DataObject) -> None:
    signer = TokenSigner([OLD, NEW])
    raw = bytearray(base64.b32decode(signer.issue(recipient_id).upper() + "===="))
    bit = data.draw(st.integers(min_value=0, max_value=len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    forged = base64.b32encode(bytes(raw)).decode().rstrip("=").lower()
    with pytest.raises(TokenError):
        signer.verify(forged)
