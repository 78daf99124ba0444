"""OAuth2 with rotating refresh tokens (Constant Contact, README "Constant Contact").

A rotating refresh token can be used once: each refresh answers a new one and kills every
earlier one. Two processes refreshing at once, or a crash between receiving a new pair and
storing it, would leave the account disconnected until a person re-authorizes. So the tokens
live in the database behind a :class:`TokenStore` (implemented by the store), a refresh runs
under the store's lock, re-reads the tokens once it holds it (another process may have just
refreshed), and the new pair is committed before it is used. ``invalid_grant`` is no
transient failure: the store keeps the grant as dead until an admin re-authorizes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

import requests

from adapters.config import Secret
from adapters.errors import ProviderAPIError

REFRESH_MARGIN = timedelta(minutes=10)  # refresh this long before the access token expires
TOKEN_PATH = "/oauth2/default/v1/token"
AUTHORIZE_PATH = "/oauth2/default/v1/authorize"
REAUTHORIZE_WAIT = 900.0  # seconds a push waits for an admin to re-authorize
SCOPES = "contact_data+offline_access"  # Constant Contact wants a literal '+' between scopes


@dataclasses.dataclass(frozen=True)
class TokenSet:
    """An access token, when it expires, and the refresh token that came with it."""

    access_token: str = dataclasses.field(repr=False)
    expires_at: datetime
    refresh_token: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Grant:
    """What the store holds for a provider: its tokens, or why a person must re-authorize."""

    tokens: TokenSet | None = None
    dead: str | None = None


class ReauthorizationNeeded(ProviderAPIError):
    """The refresh token is gone (``invalid_grant``, or none was ever given): only an admin
    re-authorizing the application brings the account back."""

    def __init__(self, provider: str, why: str) -> None:
        super().__init__(provider, f"{why}: re-authorize Constant Contact on /admin", retry_after=REAUTHORIZE_WAIT)
        self.why = why

    @property
    def retryable(self) -> bool:
        """Pushes wait (:data:`REAUTHORIZE_WAIT` at a time) and go through once re-authorized."""
        return True


class TokenStore(Protocol):
    """The tokens of one provider, kept in the database."""

    def load(self) -> Grant:
        """The grant as stored now (no lock)."""
        ...

    def refresh(self, renew: Callable[[Grant], TokenSet | None]) -> Grant:
        """Under a lock that one process at a time holds, re-read the grant and call
        ``renew`` with it: the :class:`TokenSet` it answers is stored and committed before this
        returns; ``None`` means the grant read is good as it is. A
        :class:`ReauthorizationNeeded` from ``renew`` is stored as the dead state, then raised."""
        ...

    def save(self, tokens: TokenSet) -> None:
        """Store tokens from a new authorization, ending any dead state."""
        ...


def jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` claim of a JWT access token, unverified (only to schedule the refresh:
    Constant Contact says to trust it over ``expires_in``)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (binascii.Error, ValueError, KeyError, TypeError, OverflowError):
        return None


class OAuthClient:
    """Access tokens for one application: read from the store, refreshed before they expire.

    ``initial_refresh`` is the refresh token from the configuration, used only while the store
    holds none (the first start).
    """

    def __init__(
        self,
        provider: str,
        http: requests.Session,
        *,
        auth_url: str,
        client_id: str,
        client_secret: Secret | None,
        initial_refresh: Secret | None,
        store: TokenStore,
        now: Callable[[], datetime],
        timeout: float,
    ) -> None:
        self.provider = provider
        self.http = http
        self.auth_url = auth_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._initial_refresh = initial_refresh
        self.store = store
        self.now = now
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<OAuthClient {self.provider} {self.auth_url}>"

    def access_token(self) -> str:
        """A valid access token, refreshed first when it is due."""
        grant = self.store.load()
        if grant.dead:
            raise ReauthorizationNeeded(self.provider, grant.dead)
        if grant.tokens is not None and self._fresh(grant.tokens):
            return grant.tokens.access_token
        return self._refreshed(lambda tokens: tokens is not None and self._fresh(tokens))

    def after_unauthorized(self, stale: str) -> str:
        """A new access token after the API refused ``stale`` (401), unless another process
        already replaced it."""
        return self._refreshed(lambda tokens: tokens is not None and tokens.access_token != stale)

    def _refreshed(self, good: Callable[[TokenSet | None], bool]) -> str:
        def renew(grant: Grant) -> TokenSet | None:
            if grant.dead:
                raise ReauthorizationNeeded(self.provider, grant.dead)
            if good(grant.tokens):
                return None
            refresh = grant.tokens.refresh_token if grant.tokens else None
            if refresh is None and self._initial_refresh is not None:
                refresh = self._initial_refresh.reveal()
            if refresh is None:
                raise ReauthorizationNeeded(self.provider, "no refresh token yet")
            return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh}, keep=refresh)

        tokens = self.store.refresh(renew).tokens
        assert tokens is not None  # refresh() raised otherwise
        return tokens.access_token

    def authorize_url(self, *, state: str, redirect_uri: str) -> str:
        """Where an admin's browser goes to grant access (authorization-code flow)."""
        query = urlencode(
            {"client_id": self.client_id, "redirect_uri": redirect_uri, "response_type": "code", "state": state}
        )
        return f"{self.auth_url}{AUTHORIZE_PATH}?{query}&scope={SCOPES}"

    def exchange_code(self, code: str, *, redirect_uri: str) -> None:
        """Trade an authorization code for tokens and store them (re-authorization)."""
        params = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        self.store.save(self._token_request(params, keep=None))

    def _fresh(self, tokens: TokenSet) -> bool:
        return tokens.expires_at - REFRESH_MARGIN > self.now()

    def _token_request(self, params: Mapping[str, str], *, keep: str | None) -> TokenSet:
        """POST to the token endpoint. ``keep``: the refresh token sent, kept when the answer
        carries none (long-lived refresh tokens)."""
        secret = self._client_secret.reveal() if self._client_secret else ""
        basic = base64.b64encode(f"{self.client_id}:{secret}".encode()).decode()
        hidden = tuple(s for s in (secret, params.get("refresh_token"), params.get("code")) if s)
        try:
            resp = self.http.post(
                self.auth_url + TOKEN_PATH,
                data=dict(params),
                headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ProviderAPIError(self.provider, f"token endpoint: {exc.__class__.__name__}") from None
        body = _json(resp)
        error = body.get("error") if isinstance(body, dict) else None
        if error == "invalid_grant":
            raise ReauthorizationNeeded(self.provider, "the refresh token was refused (invalid_grant)")
        if not 200 <= resp.status_code < 300 or not isinstance(body, dict):
            detail = _scrub(str(body.get("error_description") or error or resp.reason), hidden) if body else ""
            raise ProviderAPIError(
                self.provider, f"token endpoint: {resp.status_code} {detail}".rstrip(), status=resp.status_code
            )
        access, refresh = body.get("access_token"), body.get("refresh_token") or keep
        if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
            raise ProviderAPIError(self.provider, "token endpoint answered without the tokens", status=resp.status_code)
        expires_at = jwt_expiry(access)
        if expires_at is None:
            lifetime = body.get("expires_in")
            seconds = lifetime if isinstance(lifetime, int) and 0 < lifetime <= 10 * 86400 else 3600
            expires_at = self.now() + timedelta(seconds=seconds)
        return TokenSet(access, expires_at, refresh)


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json() if resp.content else None
    except ValueError:
        return None


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text[:300]
