"""Reports: bounces and complaints, which a mail system writes about a message we sent.

- **bounce**: an RFC 3464 delivery status notification (delay warnings too), a mailer-daemon's
  non-standard bounce (addresses found by ``flufl.bounce``), a list manager's or an SMS
  gateway's refusal from a robot address, or an Amazon SES bounce notification. Only permanent
  failures name an address; whether a hard bounce suppresses is the store's policy
  (``[inbound] suppress_hard_bounces``).
- **complaint**: an RFC 5965 ARF ``feedback-report`` (``abuse``, ``fraud``, ``opt-out``), a
  Hotmail JMRP report (also its inline form: the newsletter itself sent back with
  ``X-HmXmrOriginalRecipient``) or an SES complaint. The person is ``Removal-Recipient`` /
  ``Original-Rcpt-To``, else the recipient named by our own unsubscribe token in the reported
  message, else the reported message's single ``To`` address. Authentication-failure reports
  and reports with no identifiable recipient opt nobody out.
"""

from __future__ import annotations

import json
import re
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from flufl.bounce import all_failures

from adapters.events import Verification
from inbound.classify.autoreply import is_robot
from inbound.classify.decoding import DecodedMessage, decode_header, part_text, valid_addresses
from inbound.classify.dkim import DKIMCheck
from inbound.classify.tokens import Tokens, TokenTarget
from inbound.classify.verdict import Category, Classification

_DAEMON_LOCAL = re.compile(r"^(?:mailer[-_]?daemon|mail[-_]?daemon|postmaster)$", re.I)

_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery\s+(?:status|failure|failed|notification|report|problem|has\s+failed)|returned\s+mail|"
    r"mail\s+delivery|failure\s+notice|non-?delivery|could\s+not\s+be\s+delivered|undelivered|bounce\s+notification|"
    r"permanent\s+error|mail\s+(?:system\s+)?error|rejected|returned\s+to\s+sender|nicht\s+zustellbar|"
    r"unzustellbar|non\s+recapitabile|no\s+entregado|non\s+remis|не\s+доставлен|недоставлен|"
    r"delivery\s+(?:status\s+notification\s+)?\(?delay|delayed\s+mail|(?:mail|message|delivery)\s+(?:is\s+)?delayed|"
    r"warning:\s+(?:message|could\s+not\s+send)|still\s+being\s+retried|not\s+(?:yet\s+)?(?:been\s+)?delivered",
    re.I,
)
_BOUNCE_BODY = re.compile(
    r"user\s+unknown|unknown\s+user|not\s+a\s+valid\s+(?:user|recipient|mailbox|address)|"
    r"no\s+such\s+(?:user|mailbox|recipient|address)|mailbox\s+(?:unavailable|full|not\s+found|does\s+not\s+exist)|"
    r"could\s+not\s+be\s+delivered|delivery\s+(?:to\s+the\s+following\s+\w+\s+)?failed|"
    r"\b5\.\d\.\d{1,3}\b|\b550\b|permanent(?:ly)?\s+(?:error|fail)|undeliverable|message\s+(?:was\s+)?rejected|"
    r"returned\s+to\s+sender|"
    # delay warnings
    r"(?:delivery|message)\s+(?:has\s+been|is|was)\s+delayed|has(?:\s+not|n'?t)\s+(?:yet\s+)?been\s+delivered|"
    r"will\s+(?:continue\s+to\s+)?(?:be\s+)?retr(?:y|ied)|still\s+(?:trying|being\s+retried)|\b4\.\d\.\d{1,3}\b|"
    # list managers refusing a post
    r"not\s+allowed\s+to\s+post|automatically\s+rejected|(?:has|have)\s+been\s+rejected|\bwas\s+rejected\s+by|non-?member\s+(?:submission|post)|"
    r"posting\s+by\s+non-?members|not\s+a\s+(?:subscriber|member)\s+of|"
    # SMS gateways
    r"(?:invalid|unknown|not\s+a\s+valid)\s+(?:mobile|phone|wireless|cell)\s*(?:phone\s+)?number|"
    r"could\s+not\s+be\s+delivered\s+to\s+the\s+(?:mobile|phone|handset|subscriber)|sms\s+(?:delivery\s+)?fail",
    re.I,
)

_OPTOUT_FEEDBACK = frozenset({"abuse", "fraud", "opt-out", "opt-out-list", "complaint"})


def _ses_notification(m: DecodedMessage) -> dict[str, Any] | None:
    """An Amazon SES notification e-mailed by SNS (a JSON body), if this is one."""
    if (
        not (m.from_addr or "").lower().endswith(("amazonaws.com", "amazonses.com"))
        and '"notificationType"' not in m.body[:200]
    ):
        return None
    text = re.sub(r"!\r?\n ", "", m.body)  # lines folded by the relaying MTA
    start = text.find("{")
    if start < 0:
        return None
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    return data if isinstance(data, dict) and "notificationType" in data else None


def bounce(m: DecodedMessage) -> Classification | None:
    """The bounce this message is, if it is one."""
    ses = _ses_notification(m)
    if ses is not None and ses.get("notificationType") == "Bounce":
        bounce = ses.get("bounce") or {}
        recipients = valid_addresses(
            r.get("emailAddress", "") for r in bounce.get("bouncedRecipients") or [] if isinstance(r, dict)
        )
        hard = recipients if bounce.get("bounceType") == "Permanent" else []
        return Classification(
            Category.BOUNCE,
            address=hard[0] if hard else None,
            addresses=tuple(hard),
            reason=f"Amazon SES bounce notification ({bounce.get('bounceType')})",
            detail=f"bounced: {', '.join(recipients)}",
        )
    report = m.report_type() == "delivery-status" or bool(m.parts("message/delivery-status"))
    daemon = _daemon_sender(m)
    subject = _BOUNCE_SUBJECT.search(m.subject) is not None
    robot = is_robot(m.from_local)  # list managers, SMS gateways' no-reply senders
    if not (report or daemon or subject or robot):
        return None  # failures alone never make a bounce: skip the (costly) detectors
    try:
        temporary, permanent = all_failures(m.msg)
    except Exception:
        temporary, permanent = set(), set()
    hard = valid_addresses(sorted(permanent))
    soft = [a for a in valid_addresses(sorted(temporary)) if a not in hard]
    failures = bool(hard or soft)
    says_bounce = _BOUNCE_BODY.search(m.body[:5000]) is not None
    if not (
        (report and (failures or daemon or subject or says_bounce))  # a DSN, a delay warning too
        or (failures and (daemon or subject))
        or (daemon and (subject or says_bounce))
        or (robot and says_bounce)
    ):
        return None
    why = "delivery status notification" if report else "bounce from a mail server"
    detail = (
        f"from {m.from_addr or m.header('From') or '<>'}; subject {m.subject[:120]!r}; "
        f"permanent: {', '.join(hard) or '-'}; temporary: {', '.join(soft) or '-'}"
    )
    return Classification(
        Category.BOUNCE,
        address=hard[0] if hard else None,
        addresses=tuple(hard),
        reason=why + (" (hard)" if hard else " (no permanent failure)"),
        detail=detail,
    )


def _daemon_sender(m: DecodedMessage) -> bool:
    """Whether a mail system sent this: null sender, mailer-daemon or postmaster, no From."""
    raw_from = m.header("From")
    return m.null_sender or bool(_DAEMON_LOCAL.match(m.from_local)) or raw_from.replace(" ", "") in ("<>", "")


def _feedback_fields(m: DecodedMessage) -> Message | None:
    for part in m.parts("message/feedback-report"):
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        if isinstance(payload, str):
            return HeaderParser().parsestr(payload)
    return None


def _reported_headers(m: DecodedMessage) -> Message | None:
    """The headers of the message a feedback report is about."""
    for part in m.msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and part is not m.msg:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if ctype in ("text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"):
            payload = part.get_payload()
            text = str(payload[0]) if part.is_multipart() and isinstance(payload, list) else part_text(part)
            return HeaderParser().parsestr(text)
    return None


_INLINE_JMRP = re.compile(r"^(?:[\w-]+:.*\n(?:[ \t].*\n)*)*?X-HmXmrOriginalRecipient:", re.I)


def _inline_jmrp(m: DecodedMessage) -> Message | None:
    """The reported message of Hotmail's inline complaint form: the newsletter itself, sent
    back with ``X-HmXmrOriginalRecipient`` added to its own headers, or to header lines at
    the top of its body; no report wrapper."""
    if m.msg.get("X-HmXmrOriginalRecipient") is not None:
        return m.msg
    head = m.body[:8000].replace("\r\n", "\n")
    if _INLINE_JMRP.match(head):
        return HeaderParser().parsestr(head.split("\n\n", 1)[0])
    return None


def _token_target(reported: Message | None, tokens: Tokens) -> TokenTarget | None:
    """The recipient our token names in the reported message's ``List-Unsubscribe``."""
    if reported is None:
        return None
    return tokens.in_list_unsubscribe(" ".join(decode_header(v) for v in reported.get_all("List-Unsubscribe") or []))


def complaint(m: DecodedMessage, tokens: Tokens, dkim: DKIMCheck) -> Classification | None:
    """The complaint this message is, if it is one."""
    ses = _ses_notification(m)
    if ses is not None and ses.get("notificationType") == "Complaint":
        complaint = ses.get("complaint") or {}
        people = valid_addresses(
            r.get("emailAddress", "") for r in complaint.get("complainedRecipients") or [] if isinstance(r, dict)
        )
        ftype = str(complaint.get("complaintFeedbackType") or "abuse").lower()
        if ftype not in _OPTOUT_FEEDBACK or not people:
            return Classification(Category.COMPLAINT, reason=f"Amazon SES complaint ({ftype}) naming nobody to opt out")
        return Classification(
            Category.COMPLAINT,
            address=people[0],
            addresses=tuple(people),
            verification=_dkim_of(m, dkim),
            reason="Amazon SES complaint notification",
            detail=f"complainedRecipients: {', '.join(people)}",
        )
    fields = _feedback_fields(m)
    arf = m.report_type() == "feedback-report" or fields is not None
    reported = _reported_headers(m)
    if not arf and reported is None:
        reported = _inline_jmrp(m)
    jmrp = (
        not arf
        and reported is not None
        and (
            reported.get("X-HmXmrOriginalRecipient") is not None
            or re.search(r"complaint\s+about\s+message\s+from", m.subject, re.I) is not None
        )
    )
    if not (arf or jmrp):
        return None
    kind = "ARF feedback report" if arf else "Hotmail JMRP complaint"
    ftype = (
        decode_header(fields.get("Feedback-Type")) if fields is not None else ("abuse" if jmrp else "")
    ).strip().lower() or "abuse"
    if ftype not in _OPTOUT_FEEDBACK:
        return Classification(
            Category.COMPLAINT,
            reason=f"{kind}, Feedback-Type {ftype}: not a person's complaint",
            detail=_report_detail(fields, reported),
        )
    named: list[str] = []
    if fields is not None:
        named = valid_addresses(
            [*(fields.get_all("Removal-Recipient") or []), *(fields.get_all("Original-Rcpt-To") or [])]
        )
    target = _token_target(reported, tokens)
    source = "Removal-Recipient/Original-Rcpt-To"
    if not named and target is not None:
        named, source = [target.email], "our List-Unsubscribe token in the reported message"
    if not named and reported is not None:
        to = valid_addresses(reported.get_all("To") or [])
        if len(to) == 1:
            named, source = to, "the reported message's To"
        elif reported.get("X-HmXmrOriginalRecipient"):
            named, source = valid_addresses([reported.get("X-HmXmrOriginalRecipient")])[:1], "X-HmXmrOriginalRecipient"
    if not named:
        return Classification(
            Category.COMPLAINT,
            reason=f"{kind} ({ftype}) whose recipient is not identifiable",
            detail=_report_detail(fields, reported),
        )
    verification = (
        Verification.TOKEN if target is not None and target.email.lower() == named[0].lower() else _dkim_of(m, dkim)
    )
    campaign = (target.campaign or None) if verification is Verification.TOKEN and target is not None else None
    return Classification(
        Category.COMPLAINT,
        address=named[0],
        addresses=tuple(named),
        verification=verification,
        campaign=campaign,
        reason=f"{kind} ({ftype}); recipient from {source}",
        detail=_report_detail(fields, reported),
    )


def _dkim_of(m: DecodedMessage, dkim: DKIMCheck) -> Verification:
    domain = m.from_addr.split("@")[1] if m.from_addr else None
    return Verification.DKIM if dkim.aligned(domain) else Verification.NONE


def _report_detail(fields: Message | None, reported: Message | None) -> str:
    bits = []
    if fields is not None:
        for name in (
            "Feedback-Type",
            "User-Agent",
            "Original-Mail-From",
            "Original-Rcpt-To",
            "Removal-Recipient",
            "Reported-Domain",
            "Source-IP",
        ):
            for value in fields.get_all(name) or []:
                bits.append(f"{name}: {decode_header(value)}")
    if reported is not None:
        for name in ("From", "To", "Subject", "Message-ID"):
            if reported.get(name):
                bits.append(f"reported {name}: {decode_header(reported.get(name))[:200]}")
    return "; ".join(bits)
