"""What every HTML page shares: language choice (Flask-Babel catalogues in
``adapters/translations``, shared with confirmation mail), the base template's context, and error pages (HTML for
browsers, JSON for mail clients and scripts).

The language comes from ``?lang=`` (the switcher's links), else ``Accept-Language``, else
English. It is never kept in a cookie: recipients' pages set no cookies at all.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, render_template, request
from flask_babel import Babel, get_locale, gettext

from adapters.errors import PayloadError, TokenError
from adapters.wording import TRANSLATIONS_DIR
from webhooks.errors import STORE_FAILURES, error_response, retry_later, store_failed, store_unavailable

LANGUAGES = {"en": "English", "zh": "简体中文", "ar": "العربية"}
RTL = frozenset({"ar"})
DEFAULT_LANGUAGE = "en"
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def select_language() -> str:
    asked = request.args.get("lang", "")
    if asked in LANGUAGES:
        return asked
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT_LANGUAGE


def current_language() -> str:
    return str(get_locale() or DEFAULT_LANGUAGE)


def lang_url(code: str) -> str:
    """The current page in another language."""
    args = request.args.to_dict()
    args["lang"] = code
    return f"{request.path}?{urlencode(sorted(args.items()))}"


def mask_email(email: str) -> str:
    """``alice@example.com`` → ``al•••@example.com``: enough to recognise, not to harvest."""
    local, _, domain = email.rpartition("@")
    shown = local[:2] if len(local) > 3 else local[:1]
    return f"{shown}•••@{domain}"


def _context() -> dict[str, Any]:
    lang = current_language()
    return {"lang": lang, "text_dir": "rtl" if lang in RTL else "ltr", "languages": LANGUAGES, "lang_url": lang_url}


def render_page(template: str, *, status: int = 200, token_page: bool = False, **context: Any) -> Response:
    """Render an HTML page; token pages are never cached or indexed."""
    response = Response(render_template(template, **context), status=status, mimetype="text/html")
    if token_page:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Content-Language"] = current_language()
    return response


def wants_html() -> bool:
    """Whether the client names an HTML type in ``Accept``, as browsers do. Mail clients making
    a one-click POST, and scripts, do not: they get the JSON errors every other route answers
    (README "Recipients' pages and the admin dashboard")."""
    return any(mime in HTML_TYPES for mime, quality in request.accept_mimetypes if quality > 0)


def error_page(exc: PayloadError) -> Response:
    """Bad input on a page: 404 for an invalid link, else 400; an HTML page for browsers,
    JSON ``{"error": ...}`` for everything else."""
    status = 404 if isinstance(exc, TokenError) else 400
    if not wants_html():
        return error_response(status, str(exc))
    if isinstance(exc, TokenError):
        return render_page(
            "error.html",
            status=404,
            token_page=True,
            title=gettext("This link is not valid"),
            message=gettext(
                "The link may be incomplete or may have been copied wrongly. "
                "Please use the link from the most recent email."
            ),
        )
    return render_page(
        "error.html",
        status=400,
        token_page=True,
        title=gettext("Your request could not be processed"),
        message=str(exc),
    )


def store_unavailable_page(exc: Exception) -> Response:
    """The store failed: 503 with ``Retry-After`` as on every route; an HTML page for browsers."""
    if not wants_html():
        return store_unavailable(exc)
    store_failed(exc)
    page = render_page(
        "error.html",
        token_page=True,
        title=gettext("Your request could not be processed"),
        message=gettext("Nothing was changed. Please try again in a few minutes."),
    )
    return retry_later(page)


def init_app(app: Flask) -> None:
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = TRANSLATIONS_DIR
    Babel(app, locale_selector=select_language)
    app.context_processor(_context)


def page_blueprint(name: str, import_name: str, **kwargs: Any) -> Blueprint:
    """A blueprint whose bad input and store failures are answered with an HTML page for browsers."""
    bp = Blueprint(name, import_name, **kwargs)
    bp.register_error_handler(PayloadError, error_page)
    for failure in STORE_FAILURES:
        bp.register_error_handler(failure, store_unavailable_page)
    return bp
