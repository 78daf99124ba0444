"""Confirmation mail: one short message after an opt-out, with a link to subscribe again.

Off unless ``[confirmations] enabled``. Never sent for complaints (the person told their
mailbox provider, not us), for auto-generated or null-sender requests (nobody to tell, and
mail loops), for provider, API or import events, nor more than once per address per UTC day
(a unique row per address and day, claimed before sending, so concurrent requests send once).
The wording lives in the web pages' translation catalogues (``webhooks/translations``).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from importlib.resources import files

from babel.support import NullTranslations, Translations
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .config import Config, ConfirmationsConfig
from .events import Kind, OptOutEvent, Source, scope_topic
from .hub import Hub
from .models import ConfirmationSend
from .recipients import RecipientRequest, issue_tokens
from .store import _insert

log = logging.getLogger(__name__)
CONFIRMED_SOURCES = frozenset({Source.SMTP, Source.ONECLICK, Source.PREFERENCES})
SMTP_TIMEOUT_SECONDS = 15


def should_confirm(event: OptOutEvent, *, auto_submitted: bool) -> bool:
    """Whether an opt-out deserves a confirmation (before the once-a-day limit)."""
    return event.kind is Kind.UNSUBSCRIBE and event.source in CONFIRMED_SOURCES and not auto_submitted


@lru_cache(maxsize=8)
def load_translations(lang: str) -> NullTranslations:
    return Translations.load(str(files("webhooks") / "translations"), [lang, "en"])


def compose_confirmation(event: OptOutEvent, config: Config, *, link: str, now: datetime, translations: NullTranslations) -> EmailMessage:
    """The confirmation message (pure: no database, no network)."""
    _ = translations.gettext
    topic = config.topic(scope_topic(event.scope) or "")
    what = (topic.title or topic.name) if topic else _("all our emails")
    msg = EmailMessage()
    sender = config.confirmations.from_address
    msg["From"] = sender
    msg["To"] = event.email
    msg["Subject"] = _("You are unsubscribed")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders must not answer
    body = [
        _("%(address)s will no longer receive %(list)s.") % {"address": event.email, "list": what},
        "",
        _("If this was a mistake, you can subscribe again here:"),
        link,
        "",
        _("You do not need to reply to this message."),
    ]
    msg.set_content("\n".join(body) + "\n")
    return msg


def claim_daily_slot(session: Session, email_key: str, *, now: datetime) -> bool:
    """Take today's slot for ``email_key``; ``False`` if a confirmation went out today already."""
    stmt = _insert(session, ConfirmationSend).on_conflict_do_nothing(index_elements=["email_key", "day"]).returning(ConfirmationSend.id)
    return session.execute(stmt.values(email_key=email_key, day=now.date().isoformat(), sent_at=now)).first() is not None


def deliver(settings: ConfirmationsConfig, msg: EmailMessage) -> None:
    """Hand ``msg`` to the configured relay."""
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.username is not None and settings.password is not None:
            smtp.login(settings.username.reveal(), settings.password.reveal())
        smtp.send_message(msg)


def send_confirmation(hub: Hub, event: OptOutEvent, *, auto_submitted: bool, lang: str = "en") -> bool:
    """Mail a confirmation of ``event`` if allowed; call after the event is committed.

    ``auto_submitted`` is true for requests that no person sent: an ``Auto-Submitted`` header
    other than ``no``, a ``Precedence: bulk/junk/list`` header, or a null envelope sender
    (``MAIL FROM:<>``). Returns whether a mail went out; failures are logged, never raised,
    and free the day's slot so a later opt-out can try again.
    """
    settings = hub.config.confirmations
    if not settings.enabled or not should_confirm(event, auto_submitted=auto_submitted):
        return False
    now = hub.clock()
    key = event.email.lower()
    try:
        with hub.sessions.begin() as session:
            if not claim_daily_slot(session, key, now=now):
                log.info("confirmation: already sent today, skipped")
                return False
            topic = scope_topic(event.scope)
            request = RecipientRequest(event.email, topic if hub.config.topic(topic or "") else None, event.campaign)
            token = issue_tokens(session, hub.signer, hub.config, [request], now=now)[0].token
    except SQLAlchemyError as exc:
        log.warning("confirmation: store unavailable (%s), not sent", exc.__class__.__name__)
        return False
    link = f"{hub.config.http.public_url.rstrip('/')}/preferences/{token}?lang={lang}"
    msg = compose_confirmation(event, hub.config, link=link, now=now, translations=load_translations(lang))
    try:
        deliver(settings, msg)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("confirmation: relay %s:%d refused or unreachable (%s)", settings.smtp_host, settings.smtp_port, exc.__class__.__name__)
        with hub.sessions.begin() as session:
            session.execute(delete(ConfirmationSend).where(ConfirmationSend.email_key == key, ConfirmationSend.day == now.date().isoformat()))
        return False
    log.info("confirmation: sent for a %s opt-out", event.source.value)
    return True
