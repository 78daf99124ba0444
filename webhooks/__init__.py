"""optout-hub's HTTP side: a Flask application factory.

``gunicorn 'webhooks:create_app()'`` serves it in production; ``optout-hub serve`` and
``optout-hub web`` serve it in-process. Per-app state (the :class:`~adapters.hub.Hub`) lives
in ``app.extensions["optout_hub"]``; there is no module-level app, engine or connection.
"""

from __future__ import annotations

from flask import Flask

from adapters.config import Config, load_config
from adapters.hub import Hub
from adapters.runtime import tune_gc

from . import admin, api, errors, oneclick, ops, pages, preferences, providers, security


def create_app(config: Config | None = None, *, hub: Hub | None = None) -> Flask:
    """Build the app. With no argument (a WSGI server such as gunicorn starting a worker),
    loads ``$OPTOUT_HUB_CONFIG`` or the defaults and tunes the process for serving."""
    serving = config is None and hub is None
    if hub is None:
        hub = Hub.open(config if config is not None else load_config())
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = hub.config.http.max_content_length
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["optout_hub"] = hub
    errors.init_app(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    security.init_app(app)
    pages.init_app(app)
    app.register_blueprint(oneclick.bp)
    app.register_blueprint(preferences.bp)
    admin.init_app(app)
    providers.init_app(app, hub)
    if serving:
        tune_gc()
    return app
