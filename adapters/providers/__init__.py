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
from adapters.providers import constant_contact, hubspot, mailchimp, sendgrid
from adapters.providers.client import ProviderModule, PushClient
from adapters.providers.pull import Puller

PROVIDER_MODULES: dict[str, ProviderModule] = {
    "mailchimp": mailchimp,
    "sendgrid": sendgrid,
    "hubspot": hubspot,
    "constant_contact": constant_contact,
}
"""The provider modules by slug, written by hand: no discovery."""


def make_clients(
    config: Config,
    http: requests.Session,
    *,
    now: Callable[[], datetime],
    cc_state: constant_contact.CCState | None = None,
) -> dict[str, PushClient]:
    """A push client for every enabled provider, keyed by slug, in the configuration's order.

    ``cc_state``: Constant Contact's tokens, contact ids and budget in the hub's database
    (:class:`adapters.store.constant_contact.ConstantContactState`), one per process.
    """
    clients: dict[str, PushClient] = {}
    for slug in config.providers.enabled():
        if slug == constant_contact.SLUG:
            clients[slug] = constant_contact.make_client(config, http, now=now, state=cc_state)
        else:
            clients[slug] = PROVIDER_MODULES[slug].make_client(config, http, now=now)
    return clients


def make_pullers(
    config: Config,
    http: requests.Session,
    *,
    now: Callable[[], datetime],
    cc_state: constant_contact.CCState | None = None,
) -> dict[str, Puller]:
    """A puller for every enabled provider whose module can be read back (``make_puller``);
    ``cc_state`` as for :func:`make_clients`."""
    pullers: dict[str, Puller] = {}
    for slug in config.providers.enabled():
        if slug == constant_contact.SLUG:
            pullers[slug] = constant_contact.make_puller(config, http, now=now, state=cc_state)
        elif (make_puller := getattr(PROVIDER_MODULES[slug], "make_puller", None)) is not None:
            pullers[slug] = make_puller(config, http, now=now)
    return pullers
