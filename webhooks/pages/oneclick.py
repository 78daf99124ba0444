"""``/u/<token>``: RFC 8058 one-click unsubscribe.

``POST`` with the body ``List-Unsubscribe=One-Click`` (form-urlencoded or multipart) opts the
token's recipient out at the token's scope and answers 200: no redirect, no cookie, no
login. ``GET`` only shows a page with a button that makes that same POST, because link
scanners and prefetchers fetch every link in a message: a GET never changes state.
"""

from __future__ import annotations

from flask import Response, request
from flask_babel import gettext
from sqlalchemy.orm import Session

from adapters.errors import PayloadError
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent, Source, Verification, topic_scope
from adapters.store.models import Recipient
from adapters.store.queries import is_suppressed
from adapters.store.recipients import resolve_token
from webhooks.context import current_hub
from webhooks.pages.recording import record_token_request
from webhooks.pages.rendering import mask_email, page_blueprint, render_page

bp = page_blueprint("oneclick", __name__)
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"


def list_title(recipient: Recipient) -> str:
    """What the token's opt-out covers, for people: the topic's title, or everything."""
    topic = current_hub().config.topic(recipient.topic) if recipient.topic else None
    if topic is None:
        return gettext("all our emails")
    return topic.title or topic.name


def recipient_scope(recipient: Recipient) -> str:
    return topic_scope(recipient.topic) if recipient.topic else GLOBAL_SCOPE


@bp.get("/u/<token>")
def confirm_page(token: str) -> Response:
    hub = current_hub()
    with hub.sessions() as session:
        recipient = resolve_token(session, hub.signer, token)
        done = is_suppressed(session, recipient.email, recipient.topic or None)
    return render_page(
        "oneclick/confirm.html",
        token_page=True,
        token=token,
        masked=mask_email(recipient.email),
        list_title=list_title(recipient),
        already=done,
    )


@bp.post("/u/<token>")
def one_click(token: str) -> Response:
    def build(session: Session, recipient: Recipient) -> list[OptOutEvent]:
        if request.form.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
            raise PayloadError(f"the body must be {ONE_CLICK_FIELD}={ONE_CLICK_VALUE}")
        return [
            OptOutEvent(
                email=recipient.email,
                kind=Kind.UNSUBSCRIBE,
                source=Source.ONECLICK,
                scope=recipient_scope(recipient),
                verification=Verification.TOKEN,
                campaign=recipient.campaign or None,
                metadata={"recipient_id": recipient.id},
            )
        ]

    recipient, _, _ = record_token_request(current_hub(), token, Source.ONECLICK, build)
    return render_page(
        "oneclick/done.html",
        token_page=True,
        token=token,
        masked=mask_email(recipient.email),
        list_title=list_title(recipient),
    )
