"""``/admin``: the dashboard for people who run the service.

A login form exchanges the admin token for a signed, HttpOnly, SameSite=Strict session cookie
(path ``/admin``, so recipients' pages never see it). The session holds a fingerprint of the
admin token, so changing the token ends every session. Every form carries a CSRF token bound
to the session's nonce. Without a session every ``/admin`` URL redirects to the login.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, Response, flash, redirect, request, session, url_for
from flask_babel import gettext
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wrappers import Response as BaseResponse

from adapters.errors import AddressError, PayloadError
from adapters.store import review
from adapters.store.inbound_backlog import oldest_pending_age
from adapters.store.models import Evidence
from adapters.store.outbox import dead_rows, outbox_summary, retry_dead, retry_row
from adapters.store.queries import address_state
from webhooks.admin import conflicts, dashboard
from webhooks.admin.unsettled import unsettled_section
from webhooks.context import current_hub
from webhooks.errors import bearer_refused
from webhooks.pages.rendering import page_blueprint, render_page
from webhooks.security import CSRF_FIELD, bearer_token, check_csrf, csrf_token, is_admin_token

log = logging.getLogger(__name__)
bp = page_blueprint("admin", __name__, url_prefix="/admin")
SESSION_LIFETIME = timedelta(hours=8)
CSRF_MAX_AGE = int(SESSION_LIFETIME.total_seconds())
# Where a login may return to: a dashboard path, in plain characters only. Anything else (another
# site, ``//host``, a backslash, ``..``, CR/LF that would split the Location header) goes home.
RETURN_PATH = re.compile(r"/admin(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?")
PREVIEW_CHARS = 4000


def init_app(app: Flask) -> None:
    """The session cookie: keyed by a key derived from the token secret, never the secret."""
    hub = app.extensions["optout_hub"]
    app.secret_key = hub.signer.derive_key("admin session cookie")
    app.config.update(
        SESSION_COOKIE_NAME="optout_admin",
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=hub.config.http.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.url_map.converters["row_id"] = RowIdConverter
    app.register_blueprint(bp)


class RowIdConverter(IntegerConverter):
    """A row id in a URL: an integer the databases can hold (a larger one is a 404, where
    SQLite and PostgreSQL would refuse the query)."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, max=2**63 - 1)


def _fingerprint() -> str | None:
    token = current_hub().config.security.admin_token
    if token is None:
        return None
    return hmac.new(
        current_hub().signer.derive_key("admin fingerprint"), token.reveal().encode(), hashlib.sha256
    ).hexdigest()[:32]


def _nonce() -> str:
    if "nonce" not in session:
        session["nonce"] = secrets.token_urlsafe(16)
    return session["nonce"]


def _csrf() -> str:
    hub = current_hub()
    return csrf_token(hub.signer.derive_key("admin csrf"), _nonce(), now=hub.clock())


def _check_csrf() -> None:
    hub = current_hub()
    check_csrf(
        hub.signer.derive_key("admin csrf"),
        session.get("nonce", ""),
        request.form.get(CSRF_FIELD),
        now=hub.clock(),
        max_age=CSRF_MAX_AGE,
    )


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = render_page(template, status=status, csrf_field=CSRF_FIELD, csrf=_csrf(), **context)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_request
def _require_login() -> BaseResponse | None:
    if request.endpoint == "admin.login":
        return None
    given = bearer_token(request.headers)
    if given is not None:  # a script with the token; a browser cannot be made to send this header
        return None if is_admin_token(given, current_hub().config.security.admin_token) else bearer_refused()
    expected = _fingerprint()
    if expected is None or not hmac.compare_digest(session.get("admin", ""), expected):
        return redirect(url_for("admin.login", next=request.path if request.method == "GET" else None), code=303)
    if request.method == "POST":
        _check_csrf()
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse:
    if request.method == "GET":
        return _page("admin/login.html")
    _check_csrf()
    expected = current_hub().config.security.admin_token
    if expected is None:
        log.warning("admin: login refused, no admin token configured")
        return _page(
            "admin/login.html",
            401,
            error=gettext("Admin access is off: no admin token is configured (security.admin_token_env)."),
        )
    if not is_admin_token(request.form.get("token", ""), expected):
        log.warning("admin: failed login from %s", request.remote_addr)
        return _page("admin/login.html", 401, error=gettext("Wrong admin token."))
    session.clear()
    session.permanent = True
    session["admin"] = _fingerprint()
    session["nonce"] = secrets.token_urlsafe(16)
    log.info("admin: login from %s", request.remote_addr)
    target = request.args.get("next", "")
    return redirect(target if RETURN_PATH.fullmatch(target) else url_for("admin.home"), code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    session.clear()
    return redirect(url_for("admin.login"), code=303)


@bp.get("")
def home() -> Response:
    hub = current_hub()
    now = hub.clock()
    with hub.sessions() as s:
        data: dict[str, Any] = {
            "by_source": dashboard.counts_by(s, "source"),
            "by_kind": dashboard.counts_by(s, "kind", opt_outs_only=False),
            "by_reason": dashboard.counts_by(s, "reason", limit=10),
            "chart": dashboard.daily_chart(s, today=now.date()),
            "rates": dashboard.unsubscribe_rates(s),
            "latencies": dashboard.push_latencies(s, since=now - timedelta(days=30)),
            "outbox": outbox_summary(s),
            "dead": dead_rows(s, limit=50),
            "unsettled": unsettled_section(s, now=now),
            "lookups": dashboard.lookup_backlog(s),
            "review": review.review_items(s, limit=50),
            "recent": dashboard.recent_events(s),
            "conflicts": conflicts.recent_conflicts(s),
            "inbound_waiting_seconds": oldest_pending_age(s, now),
        }
    return _page("admin/dashboard.html", **data, providers=hub.config.providers.enabled(), preview=_preview)


def _preview(evidence: Evidence) -> str:
    return evidence.content[:PREVIEW_CHARS].decode("utf-8", "replace")


@bp.get("/search")
def search() -> Response:
    hub = current_hub()
    email = request.args.get("email", "").strip()
    state, evidence, error = None, {}, None
    if email:
        with hub.sessions() as s:
            try:
                state = address_state(s, email)
            except AddressError as exc:
                error = str(exc)
            else:
                ids = [e["evidence_id"] for e in state["events"] if e["evidence_id"] is not None]
                evidence = {row.id: row for row in s.query(Evidence).filter(Evidence.id.in_(ids))} if ids else {}
    return _page(
        "admin/search.html",
        400 if error else 200,
        email=email,
        state=state,
        evidence=evidence,
        error=error,
        preview=_preview,
    )


@bp.post("/review/<row_id:item>/approve")
def approve(item: int) -> BaseResponse:
    hub = current_hub()
    email = request.form.get("email", "").strip() or None
    hub.record_with(lambda s: review.approve(s, item, hub.policy, now=hub.clock(), email=email), what="approve")
    log.info("admin: review item %d approved", item)
    flash(gettext("Approved: the opt-out is recorded."))
    return redirect(url_for("admin.home", _anchor="review"), code=303)


@bp.post("/review/<row_id:item>/reject")
def reject(item: int) -> BaseResponse:
    hub = current_hub()
    with hub.sessions.begin() as s:
        review.reject(s, item, now=hub.clock())
    log.info("admin: review item %d rejected", item)
    flash(gettext("Rejected: nothing was recorded."))
    return redirect(url_for("admin.home", _anchor="review"), code=303)


@bp.post("/outbox/<row_id:row>/retry")
def retry(row: int) -> BaseResponse:
    hub = current_hub()
    with hub.sessions.begin() as s:
        if not retry_row(s, row, now=hub.clock()):
            raise PayloadError(f"outbox row {row} is not a dead letter")
    log.info("admin: outbox row %d queued again", row)
    flash(gettext("Queued again: the worker will push it shortly."))
    return redirect(url_for("admin.home", _anchor="outbox"), code=303)


@bp.post("/outbox/<provider>/retry-dead")
def retry_all_dead(provider: str) -> BaseResponse:
    """Every dead row of one provider back in the queue, in one statement."""
    hub = current_hub()
    with hub.sessions.begin() as s:
        count = retry_dead(s, provider, now=hub.clock())
    log.info("admin: %d dead outbox rows of %s queued again", count, provider)
    flash(gettext("%(n)s dead rows queued again: the worker will push them shortly.", n=count))
    return redirect(url_for("admin.home", _anchor="outbox"), code=303)
