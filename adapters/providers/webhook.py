"""What a provider's webhook is, framework-free: a :class:`WebhookSpec` per provider module.

The HTTP side (``webhooks/providers.py``, README "Provider webhooks") serves every spec with
one view: it hands :attr:`WebhookSpec.read` a :class:`WebhookRequest` built from the HTTP
request and stores the :data:`Delivery` it answers, with the raw body as evidence, in one
transaction. ``read`` verifies (raising :class:`~adapters.errors.SignatureError`, answered
with the spec's refusal) and parses (raising :class:`~adapters.errors.PayloadError`, a 400).
Nothing here touches the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters.config import Config
from adapters.events import GLOBAL_SCOPE, Kind, OptOutEvent
from adapters.storable import storable_fields


@dataclasses.dataclass(frozen=True)
class WebhookRequest:
    """One HTTP request to a provider's webhook, as plain values."""

    method: str
    path: str
    query_string: str  # as sent, undecoded (HubSpot signs it in its original order)
    headers: Mapping[str, str]  # read with :func:`adapters.providers.payloads.header`
    content_type: str
    body: bytes
    path_args: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ContactEvent:
    """A provider opt-out that names a contact id, not an address, until it is resolved."""

    object_id: str
    kind: Kind
    provider_event_id: str
    occurred_at: datetime | None
    received_at: datetime
    metadata: Mapping[str, Any]
    reason: str | None = None
    scope: str = GLOBAL_SCOPE

    def to_json(self) -> dict[str, Any]:
        """The fields kept in ``pending_lookups.event``, made storable (:mod:`adapters.storable`)."""
        return storable_fields(
            {
                "kind": self.kind.value,
                "scope": self.scope,
                "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
                "received_at": self.received_at.isoformat(),
                "reason": self.reason,
                "metadata": dict(self.metadata),
            }
        )


@dataclasses.dataclass(frozen=True)
class OptOuts:
    """A delivery whose opt-outs name addresses: recorded as events. The answer counts them,
    and how many were new (``{"events", "stored", "duplicates"}``)."""

    events: Sequence[OptOutEvent]


@dataclasses.dataclass(frozen=True)
class ContactLookups:
    """A delivery whose opt-outs name the provider's contact ids (HubSpot): queued in
    ``pending_lookups`` until the worker reads their addresses. The answer counts them
    (``{"events"}``)."""

    events: Sequence[ContactEvent]


Delivery = OptOuts | ContactLookups
"""What :attr:`WebhookSpec.read` finds in a request. Empty: answered 200, nothing stored."""


@dataclasses.dataclass(frozen=True)
class UrlRule:
    """Where a provider's webhook answers, below ``/webhooks/<slug>``.

    ``path`` is a Flask rule such as ``/<secret>``; its values reach ``check`` (and
    :attr:`WebhookRequest.path_args`). ``check`` runs before the body is read: Mailchimp signs
    nothing, so its secret path segment is the proof. With ``get_check``, a GET is the
    provider's check that the URL answers: ``{"status": "ok"}`` once ``check`` passes.
    """

    path: str = ""
    check: Callable[[Mapping[str, str], Config], None] | None = None
    get_check: bool = False

    @property
    def methods(self) -> tuple[str, ...]:
        return ("GET", "POST") if self.get_check else ("POST",)


@dataclasses.dataclass(frozen=True)
class WebhookSpec:
    """One provider's webhook.

    ``read(request, config, now)`` verifies and parses a delivery. A failed check is answered
    ``refusal_status`` with ``{"error": refusal_message}`` (the provider's own convention:
    Mailchimp 404, SendGrid 403, HubSpot 401). ``evidence_headers`` are kept with the raw
    body: never a signature or a secret. ``check_config(config)``, run at start-up when the
    provider is enabled, raises :class:`~adapters.errors.ConfigError` for a setting that
    would fail every delivery. ``media_type`` and ``signature_headers`` (the headers that
    authenticate a delivery) describe the webhook in the OpenAPI document (README "HTTP API").
    """

    read: Callable[[WebhookRequest, Config, datetime], Delivery]
    refusal_status: int
    refusal_message: str
    evidence_headers: tuple[str, ...] = ("User-Agent",)
    url: UrlRule = UrlRule()
    check_config: Callable[[Config], None] | None = None
    media_type: str = "application/json"
    signature_headers: tuple[str, ...] = ()
