"""The one exception tree of optout-hub.

    OptOutHubError
    ├── ConfigError        a bad configuration file or environment; start-up stops
    ├── PayloadError       bad input from outside (JSON, form, MIME, CSV); answered with 4xx
    │   ├── AddressError   an e-mail address that cannot be normalized
    │   └── TokenError     an unsubscribe token that is malformed, forged or unknown
    ├── SignatureError     a webhook whose signature or timestamp does not verify
    ├── StoreError         the database could not do what was asked; answered with 5xx/451
    ├── ErasureError       an erasure that cannot be done now (no key, pushes pending); 409
    └── ProviderAPIError   a provider's API answered non-2xx or could not be reached

Only the edges (Flask error handlers, the SMTP handler, the CLI) translate these into
protocol answers. Messages never contain secrets.
"""

from __future__ import annotations


class OptOutHubError(Exception):
    """Base of every error optout-hub raises on purpose."""


class ConfigError(OptOutHubError):
    """The configuration is invalid; ``key`` names the offending key (``smtp.port``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class PayloadError(OptOutHubError):
    """Input from outside is malformed or incomplete."""


class AddressError(PayloadError):
    """An address could not be normalized; the message says why."""


class TokenError(PayloadError):
    """An unsubscribe token is malformed, forged, or names no known recipient."""


class SignatureError(OptOutHubError):
    """A webhook signature is missing, malformed, wrong or too old."""


class StoreError(OptOutHubError):
    """The store failed; the caller should answer so the sender retries."""


class ErasureError(OptOutHubError):
    """An address cannot be erased now: no erasure key, another key than earlier erasures
    used, or opt-outs of it not yet pushed to every provider."""


class ProviderAPIError(OptOutHubError):
    """A provider call failed.

    ``status`` is the HTTP status (``None`` for a transport error or time-out),
    ``retry_after`` the seconds the provider asked to wait, ``body`` its answer with
    credentials removed.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status
        self.body = body
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Time-outs, transport errors, 5xx and 429 are retried; other 4xx are not."""
        return self.status is None or self.status == 429 or self.status >= 500
