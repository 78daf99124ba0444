"""The provider adapters: one module per provider (its webhook in, its push client out), what
they share (:mod:`~adapters.providers.webhook`, the framework-free webhook spec;
:mod:`~adapters.providers.client`, the push protocol and HTTP plumbing;
:mod:`~adapters.providers.payloads`, payload readers) and the registry below.

Nothing here touches the store or the worker: a provider module turns bytes into events and
addresses into API calls, and the callers decide what to keep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import requests

from adapters.config import Config
from adapters.providers import hubspot, mailchimp, sendgrid
from adapters.providers.client import ProviderModule, PushClient
from adapters.providers.pull import Puller

PROVIDER_MODULES: dict[str, ProviderModule] = {"mailchimp": mailchimp, "sendgrid": sendgrid, "hubspot": hubspot}
"""The provider modules by slug, written by hand: no discovery."""


def make_clients(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> dict[str, PushClient]:
    """A push client for every enabled provider, keyed by slug, in the configuration's order."""
    return {slug: PROVIDER_MODULES[slug].make_client(config, http, now=now) for slug in config.providers.enabled()}


def make_pullers(config: Config, http: requests.Session, *, now: Callable[[], datetime]) -> dict[str, Puller]:
    """A puller for every enabled provider whose module can be read back (``make_puller``)."""
    pullers = {}
    for slug in config.providers.enabled():
        make_puller = getattr(PROVIDER_MODULES[slug], "make_puller", None)
        if make_puller is not None:
            pullers[slug] = make_puller(config, http, now=now)
    return pullers
