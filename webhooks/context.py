"""Access to the app's :class:`~adapters.hub.Hub` from views."""

from __future__ import annotations

from flask import current_app

from adapters.hub import Hub


def current_hub() -> Hub:
    return current_app.extensions["optout_hub"]
