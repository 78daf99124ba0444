"""Recipients' pages (README "Recipients' pages and the admin dashboard").

``/u/<token>``, the RFC 8058 one-click (:mod:`~webhooks.pages.oneclick`); ``/preferences/<token>``,
the preference centre (:mod:`~webhooks.pages.preferences`); what both record
(:mod:`~webhooks.pages.recording`); and what every HTML page shares, the admin's included:
language choice, rendering, error pages (:mod:`~webhooks.pages.rendering`).
"""

from __future__ import annotations

from flask import Flask

from webhooks.pages import oneclick, preferences, rendering


def init_app(app: Flask) -> None:
    """Language choice for every page, then the recipients' pages."""
    rendering.init_app(app)
    app.register_blueprint(oneclick.bp)
    app.register_blueprint(preferences.bp)
