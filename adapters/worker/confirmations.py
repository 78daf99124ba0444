"""Confirmation mail: one short message after an opt-out, with a link to subscribe again.

Off unless ``[confirmations] enabled``. Never sent for complaints (the person told their
mailbox provider, not us), for auto-generated or null-sender requests (nobody to tell, and
mail loops), for provider, API or import events, nor more than once per address per UTC day
(a unique row per address and day, claimed with the opt-out, so concurrent requests send
once). The worker sends what is queued, retrying while the relay is down, for up to a day.
The wording lives in the catalogues pages share (:mod:`adapters.wording`).
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from babel.support import NullTranslations
from sqlalchemy import update

from adapters.config import Config, ConfirmationsConfig
from adapters.events import scope_topic
from adapters.hub import Hub
from adapters.store.confirmations import DEAD, PENDING, SENT
from adapters.store.models import ConfirmationSend
from adapters.store.recipients import RecipientRequest, issue_tokens
from adapters.wording import load_translations

log = logging.getLogger(__name__)
SMTP_TIMEOUT_SECONDS = 15
GIVE_UP_AFTER = timedelta(days=1)  # a confirmation that late would only puzzle the person


def compose_confirmation(
    email: str, scope: str, config: Config, *, link: str, now: datetime, translations: NullTranslations
) -> EmailMessage:
    """The confirmation of ``email``'s opt-out at ``scope`` (pure: no database, no network)."""
    _ = translations.gettext
    topic = config.topic(scope_topic(scope) or "")
    what = (topic.title or topic.name) if topic else _("all our emails")
    msg = EmailMessage()
    sender = config.confirmations.from_address
    msg["From"] = sender
    msg["To"] = email
    msg["Subject"] = _("You are unsubscribed")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders must not answer
    body = [
        _("%(address)s will no longer receive %(list)s.") % {"address": email, "list": what},
        "",
        _("If this was a mistake, you can subscribe again here:"),
        link,
        "",
        _("You do not need to reply to this message."),
    ]
    msg.set_content("\n".join(body) + "\n")
    return msg


def send_due_confirmations(hub: Hub, *, limit: int = 100) -> int:
    """Send the due confirmations over one relay connection; the number sent.

    Claims due rows under the worker's lease (``SKIP LOCKED`` on PostgreSQL), issues each its
    resubscribe token, sends, and settles every row in one transaction: ``sent``; or, when the
    relay is down or answers 4xx, another attempt after the worker's back-off; or ``dead`` when
    the relay refuses the recipient for good (5xx) or the mail is a day late (it would only
    confuse). Errors are kept in ``last_error``, never raised.
    """
    settings = hub.config.confirmations
    if not settings.enabled:
        return 0
    now = hub.clock()
    rows = hub.claim_due(ConfirmationSend, ConfirmationSend.state == PENDING, now=now, limit=limit)
    if not rows:
        return 0
    messages = _compose_all(hub, rows, now)
    sent: set[int] = set()
    failures: dict[int, tuple[str, bool]] = {}  # row id -> (error, permanent)
    try:
        with _relay(settings) as smtp:
            for row in rows:
                try:
                    smtp.send_message(messages[row.id])
                except smtplib.SMTPRecipientsRefused as exc:
                    code, answer = next(iter(exc.recipients.values()))
                    failures[row.id] = (f"relay refused the recipient: {code} {_text(answer)}", code >= 500)
                except smtplib.SMTPResponseException as exc:  # this message only; the session goes on
                    failures[row.id] = (
                        f"relay refused the message: {exc.smtp_code} {_text(exc.smtp_error)}",
                        exc.smtp_code >= 500,
                    )
                else:
                    sent.add(row.id)
    except (OSError, smtplib.SMTPException) as exc:
        error = f"relay {settings.smtp_host}:{settings.smtp_port} refused or unreachable ({exc.__class__.__name__})"
        log.warning("confirmation: %s; %d will be tried again", error, len(rows) - len(sent) - len(failures))
        for row in rows:
            if row.id not in sent:
                failures.setdefault(row.id, (error, False))
    _settle(hub, rows, failures, now)
    log.info("confirmations: %d sent, %d waiting or dead", len(sent), len(failures))
    return len(sent)


def _text(answer: bytes | str) -> str:
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer


def _compose_all(hub: Hub, rows: Sequence[ConfirmationSend], now: datetime) -> dict[int, EmailMessage]:
    """Each row's message, with a freshly issued resubscribe link (one transaction)."""
    with hub.sessions.begin() as session:
        requests = [
            RecipientRequest(row.email, topic if hub.config.topic(topic or "") else None, row.campaign)
            for row in rows
            for topic in [scope_topic(row.scope)]
        ]
        tokens = [issued.token for issued in issue_tokens(session, hub.signer, hub.config, requests, now=now)]
    base = hub.config.http.public_url.rstrip("/")
    return {
        row.id: compose_confirmation(
            row.email,
            row.scope,
            hub.config,
            link=f"{base}/preferences/{token}?lang={row.lang}",
            now=now,
            translations=load_translations(row.lang),
        )
        for row, token in zip(rows, tokens, strict=True)
    }


@contextlib.contextmanager
def _relay(settings: ConfirmationsConfig) -> Iterator[smtplib.SMTP]:
    """A session with the configured relay, logged in when credentials are configured."""
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.username is not None and settings.password is not None:
            smtp.login(settings.username.reveal(), settings.password.reveal())
        yield smtp


def _settle(hub: Hub, rows: Sequence[ConfirmationSend], failures: dict[int, tuple[str, bool]], now: datetime) -> None:
    updates = []
    for row in rows:
        attempts = row.attempts + 1
        if row.id not in failures:
            updates.append({"id": row.id, "state": SENT, "attempts": attempts, "sent_at": now, "last_error": None})
            continue
        error, permanent = failures[row.id]
        late = now - row.queued_at >= GIVE_UP_AFTER
        if permanent or late:
            log.warning("confirmation %d: given up (%s)", row.id, "refused for good" if permanent else "a day late")
        updates.append(
            {
                "id": row.id,
                "state": DEAD if permanent or late else PENDING,
                "attempts": attempts,
                "next_attempt_at": now + timedelta(seconds=hub.config.worker.retry_delay(attempts)),
                "last_error": error[:1000],
            }
        )
    with hub.sessions.begin() as session:
        session.execute(update(ConfirmationSend), updates)  # ORM bulk UPDATE by primary key
