"""The classifier: raw message bytes plus envelope in, one :class:`Classification` out.

Pure: no database, no network. Token resolution and DKIM's DNS lookup are injected callables,
so tests run it on files with local keys, and the classification thread
(:mod:`inbound.classification`) hands it the real ones. The README's "Mail in: the SMTP
listener" says what each outcome records.

The package, one job per module: :mod:`~inbound.classify.decoding` (parsing, decoded
headers, the body's new text), :mod:`~inbound.classify.quotes` (which lines the person
wrote), :mod:`~inbound.classify.reports` (bounces and complaints),
:mod:`~inbound.classify.tokens` (our ``unsub-<token>@`` addresses),
:mod:`~inbound.classify.autoreply` (auto-reply and robot signals),
:mod:`~inbound.classify.requests` (the multilingual request finder),
:mod:`~inbound.classify.dkim` (DKIM alignment) and :mod:`~inbound.classify.verdict` (the
result types). This module holds the order of decisions (first match wins):

1. **bounce** (:func:`~inbound.classify.reports.bounce`).
2. **complaint** (:func:`~inbound.classify.reports.complaint`).
3. **token**: a message to ``unsub-<token>@<one of [smtp].domains>`` (any case, the domain in
   Unicode or A-labels) with a valid token unsubscribes the token's recipient at the token's
   topic, whatever the body says (mail clients write "automatically generated" texts). A
   forged or unknown token is never honoured: ``review``.
4. **auto_reply** (:func:`~inbound.classify.autoreply.auto_reply_signal`), except the mail
   clients' List-Unsubscribe messages (and Outlook's bare "Unsubscribe" subject), which are
   requests.
5. **robots and lists**: a message *from* a list or robot address is never a request. A
   person's message relayed by a list that rewrote ``From`` to "Name via List" is judged on
   what the person wrote, and the person in ``Reply-To`` is the requester.
6. **request**: the person's own text (every part of it, above, between and below quotes:
   :mod:`~inbound.classify.quotes`) and a non-reply subject are searched
   (:func:`~inbound.classify.requests.find_request`). A clear request unsubscribes the
   requester, with verification ``dkim`` when a DKIM signature aligned with the requester's
   domain verifies, else ``none`` (then only if ``honour_unverified_replies``; otherwise
   ``review``). An unclear one goes to ``review``, and so does a clear one that names another
   person's address ("please unsubscribe my colleague bob@…": neither the sender nor Bob asked
   for the sender's opt-out) or one read from a structurally broken MIME message; the rest is
   ``other``.
"""

from __future__ import annotations

import logging
import re

from adapters.config import Config
from adapters.events import GLOBAL_SCOPE, Verification, topic_scope
from inbound.classify.autoreply import auto_reply_signal, client_unsubscribe, is_robot
from inbound.classify.decoding import DecodedMessage, Envelope, EnvelopeLike, mime_defects, parse_message
from inbound.classify.dkim import DKIMCheck, DNSLookup
from inbound.classify.reports import bounce, complaint
from inbound.classify.requests import Clarity, RequestMatch, clean_subject, find_request, named_addresses
from inbound.classify.tokens import ResolveToken, Tokens, TokenTarget, is_our_domain, recipient_token
from inbound.classify.verdict import Category, Classification

__all__ = [
    "Category",
    "Classification",
    "DNSLookup",
    "Envelope",
    "EnvelopeLike",
    "ResolveToken",
    "TokenTarget",
    "classify_message",
]

# flufl.bounce logs at INFO for every detector it runs on every message; keep that out of the
# service log unless a deployment asks for that logger explicitly.
if logging.getLogger("flufl.bounce").level == logging.NOTSET:
    logging.getLogger("flufl.bounce").setLevel(logging.WARNING)


def classify_message(
    raw: bytes,
    envelope: EnvelopeLike,
    *,
    config: Config,
    resolve_token: ResolveToken | None = None,
    dkim_dns: DNSLookup | None = None,
) -> Classification:
    """Classify one received message (see the module docstring for the order of decisions).

    ``resolve_token(token)`` returns what a token names or raises
    :class:`~adapters.errors.TokenError`; ``dkim_dns`` is dkimpy's TXT lookup (``None``: DKIM
    is not checked and replies are unverified). Never raises for bad input.
    """
    try:
        msg = parse_message(_crlf(raw))
    except Exception as exc:
        return Classification(Category.OTHER, reason="unparseable message", detail=type(exc).__name__)
    m = DecodedMessage(raw, msg, envelope)
    tokens = Tokens(config.smtp.domains, resolve_token)
    dkim = DKIMCheck(raw, dkim_dns)
    found = bounce(m) or complaint(m, tokens, dkim) or _token(m, tokens)
    return found if found is not None else _request(m, config, dkim)


_LONE_CR = re.compile(rb"\r(?!\n)")


def _crlf(raw: bytes) -> bytes:
    """CR-only line ends (old Mac clients, some gateways) as CRLF, so the parser sees the
    header lines; LF-only ones the parser reads as they are. DKIM checks the bytes received."""
    return _LONE_CR.sub(b"\r\n", raw) if b"\r" in raw else raw


def _token(m: DecodedMessage, tokens: Tokens) -> Classification | None:
    """Step 3: a message to one of our tokenized unsubscribe addresses."""
    found = [(rcpt, token) for rcpt in m.envelope.rcpt_tos if (token := recipient_token(rcpt, tokens.domains))]
    if not found:
        return None
    for rcpt, token in found:
        target = tokens.target(token)
        if target is None:
            continue
        return Classification(
            Category.UNSUBSCRIBE,
            address=target.email,
            scope=topic_scope(target.topic) if target.topic else GLOBAL_SCOPE,
            verification=Verification.TOKEN,
            campaign=target.campaign or None,
            reason="sent to a valid tokenized unsubscribe address",
            automatic=True,
            detail=f"RCPT TO {rcpt}; From {m.from_addr or '-'}; subject {m.subject[:120]!r}",
        )
    rcpts = ", ".join(rcpt for rcpt, _ in found)
    return Classification(
        Category.REVIEW,
        address=m.requester()[0],
        reason="tokenized unsubscribe address with a forged or unknown token: not honoured",
        detail=f"RCPT TO {rcpts}; From {m.from_addr or '-'}; subject {m.subject[:120]!r}",
    )


def _a_person_other_than(address: str, requester: str, m: DecodedMessage, domains: tuple[str, ...]) -> bool:
    """Whether an address written in a request is someone else's: not the requester's, not
    ours, not a list's or a robot's ("unsubscribe me from devs-request@…" is about the sender)."""
    local, _, domain = address.rpartition("@")
    return (
        address != requester.lower()
        and not is_our_domain(domain, domains)
        and address != m.list_address
        and not is_robot(local)
    )


def _request(m: DecodedMessage, config: Config, dkim: DKIMCheck) -> Classification:
    """Steps 4 to 6: automatic messages, robots and lists, then a person's request."""
    languages = config.inbound.languages
    client = client_unsubscribe(m)
    cleaned, prefixed = clean_subject(m.subject)
    subject_match = None if prefixed else find_request(cleaned, "", languages)
    bare_request = subject_match is not None and subject_match.clarity is Clarity.CLEAR
    if client is None:
        signal = auto_reply_signal(m, bare_request)
        if signal is not None:
            return Classification(
                Category.AUTO_REPLY,
                reason=f"automatic message: {signal}",
                detail=f"From {m.from_addr or '-'}; subject {m.subject[:120]!r}",
            )
    requester, how = m.requester()
    if m.from_addr is not None and how == "From" and is_robot(m.from_local):
        return Classification(
            Category.AUTO_REPLY, reason="sent by a list or robot address, never a request", detail=f"From {m.from_addr}"
        )
    if requester is not None and is_robot(requester.split("@")[0]):
        return Classification(
            Category.AUTO_REPLY,
            reason="requester is a list or robot address, never a request",
            detail=f"{how}: {requester}",
        )
    if m.from_addr is not None and (m.list_address or "") == m.from_addr.lower() and how == "From":
        return Classification(
            Category.AUTO_REPLY, reason="sent by the mailing list itself", detail=f"From {m.from_addr}"
        )
    match: RequestMatch | None
    if client is not None:
        match = RequestMatch(Clarity.CLEAR, "headers", "-", client)
    else:
        match = find_request(m.subject, m.new, languages)
    if match is None:
        return Classification(
            Category.OTHER,
            reason="no request in the new text",
            detail=f"{how}: {requester or '-'}; subject {m.subject[:120]!r}",
        )
    evidence = f"{match.describe()}; requester from {how}: {requester or '-'}"
    if requester is None:
        return Classification(Category.REVIEW, reason="a request whose sender cannot be identified", detail=evidence)
    if match.clarity is Clarity.UNCLEAR:
        return Classification(Category.REVIEW, address=requester, reason="unclear request", detail=evidence)
    others = (
        sorted(
            a for a in named_addresses(m.subject, m.new) if _a_person_other_than(a, requester, m, config.smtp.domains)
        )
        if client is None
        else []
    )
    if others:  # "please unsubscribe my colleague bob@…": not a request about the sender
        return Classification(
            Category.REVIEW,
            address=requester,
            reason="the request names another address",
            detail=f"{evidence}; names {', '.join(others[:5])}",
            named=tuple(others[:5]),
        )
    verified = dkim.aligned(requester.split("@")[1])
    verification = Verification.DKIM if verified else Verification.NONE
    if not verified and not config.inbound.honour_unverified_replies:
        return Classification(
            Category.REVIEW,
            address=requester,
            reason="clear request without a verified DKIM signature (honour_unverified_replies is off)",
            detail=evidence,
        )
    broken = mime_defects(m.msg)
    if broken and client is None:
        return Classification(
            Category.REVIEW,
            address=requester,
            reason="a request in a malformed MIME message",
            detail=f"{evidence}; defects: {', '.join(broken)}",
        )
    reason = "mail client's List-Unsubscribe message" if client is not None else "request in the sender's own text"
    return Classification(
        Category.UNSUBSCRIBE,
        address=requester,
        verification=verification,
        reason=reason,
        detail=evidence,
        automatic=client is not None,
    )
