"""``/admin``: the dashboard for people who run the service.

A login form exchanges the admin token for a signed, HttpOnly, SameSite=Strict session cookie
(path ``/admin``, so recipients' pages never see it). Each admin has a name and a token
(``[[admins]]``, or the single ``[security] admin_token_env`` as "admin"); the session holds
the name and a fingerprint of that admin's token, so changing the token ends their sessions,
and every action is recorded under the name. Every form carries a CSRF token bound
to the session's nonce. Without a session every ``/admin`` URL redirects to the login.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
from datetime import date, timedelta
from typing import Any

from flask import Flask, Response, flash, g, redirect, request, session, url_for
from flask_babel import gettext
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter, Map
from werkzeug.wrappers import Response as BaseResponse

from adapters import rates_report
from adapters.compliance.deadlines import Limits
from adapters.config import Admin
from adapters.errors import AddressError, PayloadError
from adapters.events import Source
from adapters.labels import label
from adapters.store import review
from adapters.store.inbound_backlog import oldest_pending_age
from adapters.store.models import Evidence
from adapters.store.outbox import dead_rows, outbox_summary, retry_dead, retry_row, unsettled_received_before
from adapters.store.queries import address_state
from adapters.store.rates import DIMENSIONS, RateTable, rate_table
from webhooks.admin import actions, conflicts, constant_contact, dashboard, subscribers
from webhooks.admin.unsettled import unsettled_section
from webhooks.context import current_hub
from webhooks.errors import bearer_refused
from webhooks.pages.rendering import page_blueprint, render_page
from webhooks.security import CSRF_FIELD, admin_for_token, bearer_token, check_csrf, csrf_token

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
    app.register_blueprint(constant_contact.callback_bp)


class RowIdConverter(IntegerConverter):
    """A row id in a URL: an integer the databases can hold (a larger one is a 404, where
    SQLite and PostgreSQL would refuse the query)."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, max=2**63 - 1)


def _fingerprint(admin: Admin) -> str:
    assert admin.token is not None  # admin_accounts() holds only admins with a token
    return hmac.new(
        current_hub().signer.derive_key("admin fingerprint"),
        f"{admin.name}\x00{admin.token.reveal()}".encode(),
        hashlib.sha256,
    ).hexdigest()[:32]


def _signed_in() -> Admin | None:
    """The admin of this session, while their token is still the one they signed in with."""
    name, given = session.get("admin"), session.get("admin_key", "")
    admin = next((a for a in current_hub().config.admin_accounts() if a.name == name), None)
    return admin if admin is not None and hmac.compare_digest(given, _fingerprint(admin)) else None


def acting_admin() -> str:
    """The name of the admin making this request (README "Named admins")."""
    name: str = g.admin.name
    return name


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


def _label(dimension: str, code: str) -> str:
    """A stored code's label in the admin's language."""
    return label(dimension, code, gettext)


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = render_page(template, status=status, csrf_field=CSRF_FIELD, csrf=_csrf(), label=_label, **context)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_request
def _require_login() -> BaseResponse | None:
    if request.endpoint == "admin.login":
        return None
    given = bearer_token(request.headers)
    if given is not None:  # a script with the token; a browser cannot be made to send this header
        g.admin = admin_for_token(given, current_hub().config.admin_accounts())
        return None if g.admin is not None else bearer_refused()
    g.admin = _signed_in()
    if g.admin is None:
        return redirect(url_for("admin.login", next=request.path if request.method == "GET" else None), code=303)
    if request.method == "POST":
        _check_csrf()
    return None


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse:
    if request.method == "GET":
        return _page("admin/login.html")
    _check_csrf()
    accounts = current_hub().config.admin_accounts()
    if not accounts:
        log.warning("admin: login refused, no admin token configured")
        return _page(
            "admin/login.html",
            401,
            error=gettext("Admin access is off: no admin token is configured (security.admin_token_env)."),
        )
    admin = admin_for_token(request.form.get("token", ""), accounts)
    if admin is None:
        log.warning("admin: failed login from %s", request.remote_addr)
        return _page("admin/login.html", 401, error=gettext("Wrong admin token."))
    session.clear()
    session.permanent = True
    session["admin"] = admin.name
    session["admin_key"] = _fingerprint(admin)
    session["nonce"] = secrets.token_urlsafe(16)
    log.info("admin: %s signed in from %s", admin.name, request.remote_addr)
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
    limits = Limits(hub.config.compliance.holiday_dates())
    since, until = _date_range()
    with hub.sessions() as s:
        data: dict[str, Any] = {
            "tables": {by: _rates(s, by, since, until) for by in DIMENSIONS},
            "chart": dashboard.daily_chart(s, first=since, last=until),
            "imports": dashboard.daily_chart(s, first=since, last=until, sources=(Source.IMPORT,), height=80),
            "latencies": dashboard.push_latencies(s, since=now - timedelta(days=30)),
            "outbox": outbox_summary(s),
            "dead": dead_rows(s, limit=50),
            "unsettled": unsettled_section(s, now=now, limits=limits),
            "overdue": unsettled_received_before(s, limits.overdue_before(now)),
            "lookups": dashboard.lookup_backlog(s),
            "review": review.review_items(s, limit=50),
            "recent": dashboard.recent_events(s),
            "conflicts": conflicts.recent_conflicts(s),
            "admin_actions": actions.recent_actions(s),
            "inbound_waiting_seconds": oldest_pending_age(s, now),
            "constant_contact": constant_contact.section(s, hub, now),
            "subscribers": subscribers.section(s, configured=bool(hub.config.subscribers)),
        }
    return _page(
        "admin/dashboard.html",
        **data,
        since=since,
        until=until,
        providers=hub.config.providers.enabled(),
        preview=_preview,
        candidates=review.candidates,
        percent=rates_report.percent,
    )


def _date_range() -> tuple[date, date]:
    """``?since=&until=`` (ISO days, both included); by default the last 30 days."""
    today = current_hub().clock().date()
    return rates_report.date_range(request.args.get("since"), request.args.get("until"), today=today)


def _rates(session: Session, by: str, since: date, until: date) -> RateTable:
    """A rate table with its labels in the admin's language (topics keep their titles)."""
    titles = {t.name: t.title for t in current_hub().config.topics}
    table = rate_table(session, by, since=since, until=until, now=current_hub().clock(), titles=titles)
    if by in ("topic", "campaign"):
        return table
    return dataclasses.replace(table, rows=[dataclasses.replace(r, label=_label(by, r.key)) for r in table.rows])


@bp.get("/rates/<any(source, kind, reason, topic, campaign):by>.csv")
def rates_csv(by: str) -> Response:
    """One table of ``/admin`` as CSV, over the same ``since``/``until`` as the page."""
    hub = current_hub()
    since, until = rates_report.date_range(
        request.args.get("since"), request.args.get("until"), today=hub.clock().date()
    )
    with hub.sessions() as s:
        table = _rates(s, by, since, until)
    response = Response(rates_report.to_csv(table), mimetype="text/csv")
    name = f"optout-rates-{by}-{since.isoformat()}-{until.isoformat()}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


bp.add_url_rule(
    "/constant_contact/authorize",
    endpoint="constant_contact_authorize",
    view_func=constant_contact.authorize,
    methods=["POST"],
)
bp.add_url_rule(
    "/subscribers/<row_id:delivery>/retry", endpoint="subscriber_retry", view_func=subscribers.retry, methods=["POST"]
)


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
                state = address_state(s, email, policy=hub.policy)
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


@bp.get("/evidence/<row_id:item>")
def evidence(item: int) -> Response:
    """The stored evidence whole, as the audit links it: a download, never rendered."""
    with current_hub().sessions() as s:
        row = s.get(Evidence, item)
        if row is None:
            raise NotFound()
        content = row.content
    return Response(
        content,
        mimetype="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename=evidence-{item}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@bp.post("/review/<row_id:item>/approve")
def approve(item: int) -> BaseResponse:
    hub = current_hub()
    email = request.form.get("email", "").strip() or None
    admin = acting_admin()
    hub.record_with(
        lambda s: review.approve(s, item, hub.policy, now=hub.clock(), admin=admin, email=email), what="approve"
    )
    log.info("admin: review item %d approved by %s", item, admin)
    flash(gettext("Approved: the opt-out is recorded."))
    return redirect(url_for("admin.home", _anchor="review"), code=303)


@bp.post("/review/<row_id:item>/reject")
def reject(item: int) -> BaseResponse:
    hub = current_hub()
    with hub.sessions.begin() as s:
        review.reject(s, item, now=hub.clock(), admin=acting_admin())
    log.info("admin: review item %d rejected by %s", item, acting_admin())
    flash(gettext("Rejected: nothing was recorded."))
    return redirect(url_for("admin.home", _anchor="review"), code=303)


@bp.post("/outbox/<row_id:row>/retry")
def retry(row: int) -> BaseResponse:
    hub = current_hub()
    with hub.sessions.begin() as s:
        if not retry_row(s, row, now=hub.clock(), admin=acting_admin()):
            raise PayloadError(f"outbox row {row} is not a dead letter")
    log.info("admin: outbox row %d queued again by %s", row, acting_admin())
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
