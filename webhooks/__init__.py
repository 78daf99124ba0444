"""optout-hub's HTTP side: a Flask application factory.

``gunicorn 'webhooks:create_app()'`` serves it in production; ``optout-hub serve`` and
``optout-hub web`` serve it in-process. Per-app state (the :class:`~adapters.hub.Hub`) lives
in ``app.extensions["optout_hub"]``; there is no module-level app, engine or connection.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from adapters.config import Config, load_config
from adapters.errors import ConfigError
from adapters.hub import Hub
from adapters.logs import configure_logging
from adapters.runtime import tune_gc
from webhooks import admin, api, errors, openapi, ops, pages, providers, request_ids, security
from webhooks.startup import fail_start


def create_app(config: Config | None = None, *, hub: Hub | None = None) -> Flask:
    """Build the app. With no argument (a WSGI server such as gunicorn starting a worker),
    loads ``$OPTOUT_HUB_CONFIG`` or the defaults and tunes the process for serving."""
    if hub is None:
        if config is None:
            return _app_for_wsgi_server()
        hub = Hub.open(config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = hub.config.http.max_content_length
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["optout_hub"] = hub
    if hops := hub.config.http.trusted_proxy_hops:
        # The client's address kept as evidence is the one the trusted proxy saw, not its own.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    request_ids.init_app(app)
    errors.init_app(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)
    security.init_app(app)
    pages.init_app(app)
    admin.init_app(app)
    providers.init_app(app, hub)
    return app


def _app_for_wsgi_server() -> Flask:
    """A bad configuration ends start-up with the one line naming the key."""
    try:
        config = load_config()
        configure_logging(config.logging)  # the app's records are kept, with their timestamps
        app = create_app(hub=Hub.open(config))
    except ConfigError as exc:
        fail_start(f"optout-hub: config error: {exc}")
    tune_gc()
    return app
