"""Constant Contact on ``/admin`` (README "Constant Contact"): whether the hub holds a live
grant, the day's remaining call budget, the opt-outs still to push and the last poll; and
re-authorization, the OAuth2 authorization-code flow.

An admin's POST (session and CSRF checked by the dashboard) stores a fresh single-use
``state`` and sends the browser to Constant Contact; Constant Contact sends it back to
``[http].public_url`` + :data:`CALLBACK_PATH` with a code. The callback is outside ``/admin``:
the admin's SameSite=Strict cookie is not sent on that cross-site redirect, so the state,
issued to a signed-in admin minutes before and good once, is the proof.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

import requests
from flask import Blueprint, Response, redirect, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from adapters.errors import ProviderAPIError
from adapters.hub import Hub
from adapters.providers.constant_contact import SLUG, make_oauth
from adapters.providers.oauth import OAuthClient
from adapters.store.constant_contact import ConstantContactState, Status, status
from adapters.store.models import OutboxRow
from webhooks.context import current_hub
from webhooks.errors import error_response

log = logging.getLogger(__name__)
CALLBACK_PATH = "/oauth/constant_contact/callback"
callback_bp = Blueprint("constant_contact_oauth", __name__)


@dataclasses.dataclass(frozen=True)
class Section:
    status: Status
    daily: int
    pending: int
    next_attempt: datetime | None


def section(session: Session, hub: Hub, now: datetime) -> Section | None:
    """The dashboard's Constant Contact card; ``None`` when the provider is off."""
    cfg = hub.config.providers.constant_contact
    if not cfg.enabled:
        return None
    pending, due = session.execute(
        select(func.count(), func.min(OutboxRow.due_at)).where(OutboxRow.provider == SLUG, OutboxRow.state == "pending")
    ).one()
    return Section(status(session, cfg, now), cfg.daily_requests, pending, due)


def _redirect_uri(hub: Hub) -> str:
    return hub.config.http.public_url.rstrip("/") + CALLBACK_PATH


def _oauth(hub: Hub, http: requests.Session) -> tuple[ConstantContactState, OAuthClient]:
    state = ConstantContactState(hub.sessions, hub.config.providers.constant_contact, clock=hub.clock)
    return state, make_oauth(hub.config, http, now=hub.clock, state=state)


def authorize() -> BaseResponse:
    """``POST /admin/constant_contact/authorize``: off to Constant Contact's consent page."""
    hub = current_hub()
    if not hub.config.providers.constant_contact.enabled:
        return error_response(404, "constant_contact is not enabled")
    with requests.Session() as http:
        state, oauth = _oauth(hub, http)
        url = oauth.authorize_url(state=state.begin_authorization(), redirect_uri=_redirect_uri(hub))
    log.info("admin: Constant Contact authorization started from %s", request.remote_addr)
    return redirect(url, code=303)


@callback_bp.get(CALLBACK_PATH)
def callback() -> BaseResponse | Response:
    """Constant Contact's redirect back: the state checked and spent, the code exchanged for
    tokens that end any dead state."""
    hub = current_hub()
    if not hub.config.providers.constant_contact.enabled:
        return error_response(404, "constant_contact is not enabled")
    given, code, refused = (request.args.get(k, "") for k in ("state", "code", "error"))
    with requests.Session() as http:
        state, oauth = _oauth(hub, http)
        if not given or not state.consume_authorization(given):
            log.warning("constant_contact callback with an unknown or expired state from %s", request.remote_addr)
            return error_response(400, "unknown or expired authorization: start again from /admin")
        if refused or not code:
            return error_response(400, "Constant Contact did not grant access: start again from /admin")
        try:
            oauth.exchange_code(code, redirect_uri=_redirect_uri(hub))
        except ProviderAPIError as exc:
            log.warning("constant_contact: the authorization code was refused: %s", exc)
            return error_response(502, "Constant Contact refused the authorization code: start again from /admin")
    log.info("constant_contact: re-authorized")
    return redirect("/admin#constant-contact", code=303)
