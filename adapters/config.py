"""Typed configuration, loaded once from TOML and passed in (README "Configuration").

Every section is a frozen dataclass. A key ending in ``_env`` names an environment
variable that holds a secret; the resolved value sits beside it, in the field of the same
name without ``_env``, as a :class:`Secret` whose repr never shows it. An empty ``_env``
value means "not used". A bad file stops start-up with one :class:`ConfigError` naming the
key.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.addresses import normalize_domain
from adapters.errors import AddressError, ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

CONFIG_ENV = "OPTOUT_HUB_CONFIG"
TOPIC_FIELDS = {"mailchimp": "mailchimp_list", "sendgrid": "sendgrid_group", "hubspot": "hubspot_subscription"}
"""Each provider's slug, and the ``[[topics]]`` key naming the list, group or subscription
that represents a topic there."""
PROVIDER_SLUGS = tuple(TOPIC_FIELDS)


class Secret:
    """A secret value that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///optout-hub.db"


@dataclasses.dataclass(frozen=True)
class SMTPConfig:
    host: str = "127.0.0.1"
    port: int = 2525
    domains: tuple[str, ...] = ("unsubscribe.example.com",)
    max_message_bytes: int = 1_048_576  # the README's default; Postfix's own is 10240000
    max_connections: int = 200
    max_connections_per_peer: int = 50
    timeout_seconds: int = 60
    stress_timeout_seconds: int = 10

    def __post_init__(self) -> None:
        """Keep ``domains`` in the one form every recipient's domain is compared in
        (:func:`~adapters.addresses.normalize_domain`: lower case, IDNA A-labels), duplicates
        dropped, so ``bücher.example`` and ``xn--bcher-kva.example`` name one domain."""
        normalized = []
        for i, domain in enumerate(self.domains):
            try:
                normalized.append(normalize_domain(domain))
            except AddressError as exc:
                raise ConfigError(f"smtp.domains[{i}]", f"not a mail domain: {exc}") from None
        object.__setattr__(self, "domains", tuple(dict.fromkeys(normalized)))


@dataclasses.dataclass(frozen=True)
class HTTPConfig:
    host: str = "127.0.0.1"
    port: int = 8025
    public_url: str = "https://unsubscribe.example.com"
    max_content_length: int = 16 * 1024 * 1024
    threads: int = 8
    # Reverse proxies in front that set X-Forwarded-For/-Proto/-Host (README "Running on
    # PostgreSQL with several processes"): 0 trusts no such header, 1 the one nginx hop.
    trusted_proxy_hops: int = 0


@dataclasses.dataclass(frozen=True)
class SecurityConfig:
    token_secret_env: str = "OPTOUT_HUB_SECRET"
    previous_token_secrets_env: tuple[str, ...] = ()
    admin_token_env: str = "OPTOUT_HUB_ADMIN_TOKEN"
    token_secret: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    previous_token_secrets: tuple[Secret, ...] = dataclasses.field(default=(), repr=False, compare=False)
    admin_token: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Topic:
    name: str
    title: str = ""
    mailchimp_list: str | None = None
    sendgrid_group: int | None = None
    hubspot_subscription: str | None = None

    def mapping(self, provider: str) -> str | int | None:
        """What represents this topic at ``provider`` (``None``: the provider cannot)."""
        value: str | int | None = getattr(self, TOPIC_FIELDS[provider])
        return value


@dataclasses.dataclass(frozen=True)
class MailchimpConfig:
    enabled: bool = False
    api_key_env: str = "MAILCHIMP_API_KEY"
    webhook_secret_env: str = "MAILCHIMP_WEBHOOK_SECRET"
    lists: tuple[str, ...] = ()
    base_url: str = ""
    timeout_seconds: float = 10.0
    batch_size: int = 500
    api_key: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    webhook_secret: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class SendGridConfig:
    enabled: bool = False
    api_key_env: str = "SENDGRID_API_KEY"
    webhook_public_key_env: str = "SENDGRID_WEBHOOK_PUBLIC_KEY"
    base_url: str = ""
    timeout_seconds: float = 10.0
    batch_size: int = 1000
    max_timestamp_age_seconds: int = 0  # 0: no limit (SendGrid retries for up to 24 h)
    api_key: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    webhook_public_key: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class HubSpotConfig:
    enabled: bool = False
    access_token_env: str = "HUBSPOT_ACCESS_TOKEN"
    client_secret_env: str = "HUBSPOT_CLIENT_SECRET"
    subscription_ids: tuple[str, ...] = ()
    base_url: str = ""
    timeout_seconds: float = 10.0
    batch_size: int = 100
    batch_unsubscribe_all: bool = True  # false: one call per address (portals without Marketing Hub Enterprise)
    access_token: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    client_secret: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class ProvidersConfig:
    mailchimp: MailchimpConfig = MailchimpConfig()
    sendgrid: SendGridConfig = SendGridConfig()
    hubspot: HubSpotConfig = HubSpotConfig()

    def enabled(self) -> tuple[str, ...]:
        """Slugs of the enabled providers, in a fixed order."""
        return tuple(slug for slug in PROVIDER_SLUGS if getattr(self, slug).enabled)


@dataclasses.dataclass(frozen=True)
class InboundConfig:
    honour_unverified_replies: bool = True
    suppress_hard_bounces: bool = False
    languages: tuple[str, ...] = ("en", "zh", "ar", "es", "pt", "fr", "de", "it", "nl", "ja", "ru")
    retry_max_seconds: float = 60.0


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    enabled: bool = True
    collect_window_seconds: float = 0.2
    poll_interval_seconds: float = 0.5
    lease_seconds: int = 120
    max_attempts: int = 25
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 3600.0
    compact_after_seconds: float = 3600.0  # settled rows leave the outbox this long after settling
    compact_batch: int = 5000  # rows moved per compaction step

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts: doubling from the base, capped."""
        return min(self.backoff_base_seconds * 2.0 ** max(failures - 1, 0), self.backoff_max_seconds)


@dataclasses.dataclass(frozen=True)
class ConfirmationsConfig:
    enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    starttls: bool = False
    username_env: str = ""
    password_env: str = ""
    from_address: str = "no-reply@unsubscribe.example.com"
    username: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    password: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"


@dataclasses.dataclass(frozen=True)
class ConsentConfig:
    """README "Consent". ``provider_resubscribes``: the providers whose report of the person's
    own resubscribe may lift an opt-out that came from that provider. All three by default;
    a list can only leave some out (stricter), never trust anything more."""

    provider_resubscribes: tuple[str, ...] = PROVIDER_SLUGS


@dataclasses.dataclass(frozen=True)
class Config:
    database: DatabaseConfig = DatabaseConfig()
    smtp: SMTPConfig = SMTPConfig()
    http: HTTPConfig = HTTPConfig()
    security: SecurityConfig = SecurityConfig()
    topics: tuple[Topic, ...] = ()
    providers: ProvidersConfig = ProvidersConfig()
    inbound: InboundConfig = InboundConfig()
    worker: WorkerConfig = WorkerConfig()
    confirmations: ConfirmationsConfig = ConfirmationsConfig()
    logging: LoggingConfig = LoggingConfig()
    consent: ConsentConfig = ConsentConfig()

    def topic(self, name: str) -> Topic | None:
        return next((t for t in self.topics if t.name == name), None)


# --- loading -----------------------------------------------------------------------------

_Section = TypeVar("_Section", bound="DataclassInstance")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _check_value(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a field type hint and convert lists to tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _check_value(value, args[0], key)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list of {_TYPE_NAMES.get(item, item.__name__)}s")
        return tuple(_check_value(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in _TYPE_NAMES:
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(key, f"must be {_TYPE_NAMES[hint]}")
        return value
    raise ConfigError(key, "unsupported value")  # pragma: no cover - all hints are listed above


def _build(cls: type[_Section], data: object, path: str, env: Mapping[str, str]) -> _Section:
    """Build dataclass ``cls`` from a TOML table, resolving ``*_env`` secrets from ``env``.

    A referenced environment variable that is unset is an error when the section is enabled
    (providers, confirmations) or when the file names the variable itself; a default name
    that is unset leaves the secret ``None`` (the service then runs without that feature).
    """
    if not isinstance(data, dict):
        raise ConfigError(path, "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    secrets = {name: f"{name}_env" for name in fields if f"{name}_env" in fields}  # field -> its *_env key
    settable = [name for name in fields if name not in secrets]
    for key in data:
        if key not in settable:
            raise ConfigError(f"{path}.{key}", "unknown key")
    values: dict[str, Any] = {}
    for name in settable:
        if name not in data:
            continue
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[name] = _build(hint, data[name], f"{path}.{name}", env)
        else:
            values[name] = _check_value(data[name], hint, f"{path}.{name}")
    switchable = "enabled" in fields
    enabled = values.get("enabled", fields["enabled"].default) if switchable else True
    for name, env_key in secrets.items():
        names = values.get(env_key, fields[env_key].default)
        must = enabled and (switchable or env_key in data)
        if isinstance(names, tuple):
            values[name] = tuple(_resolve(n, f"{path}.{env_key}", env, must) for n in names if n)
        else:
            values[name] = _resolve(names, f"{path}.{env_key}", env, must) if names else None
    return cls(**values)


def _resolve(var: str, key: str, env: Mapping[str, str], must: bool) -> Secret | None:
    value = env.get(var)
    if value:
        return Secret(value)
    if must:
        raise ConfigError(key, f"environment variable {var} is not set")
    return None


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from a parsed TOML document."""
    env = os.environ if env is None else env
    data = dict(data)
    if isinstance(data.get("database"), dict) and "url_env" in data["database"]:
        data["database"] = _database_url_from_env(data["database"], env)
    topics_raw = data.pop("topics", [])
    if not isinstance(topics_raw, list):
        raise ConfigError("topics", "must be an array of tables ([[topics]])")
    providers_raw = data.pop("providers", {})
    if not isinstance(providers_raw, dict):
        raise ConfigError("providers", "must be a table")
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for key in data:
        if key not in hints or key in ("topics", "providers"):
            raise ConfigError(key, "unknown key")
    for key, hint in hints.items():  # absent tables too: their default *_env names still resolve
        if key not in ("topics", "providers"):
            values[key] = _build(hint, data.get(key, {}), key, env)
    providers: dict[str, Any] = {}
    for slug, table in providers_raw.items():
        if slug not in PROVIDER_SLUGS:
            raise ConfigError(f"providers.{slug}", "unknown provider")
        providers[slug] = _build(typing.get_type_hints(ProvidersConfig)[slug], table, f"providers.{slug}", env)
    values["providers"] = ProvidersConfig(**providers)
    topics = []
    for i, table in enumerate(topics_raw):
        if not isinstance(table, dict) or "name" not in table:
            raise ConfigError(f"topics[{i}].name", "missing")
        topics.append(_build(Topic, table, f"topics[{i}]", env))
    values["topics"] = tuple(topics)
    config = Config(**values)
    _validate(config)
    return config


def _database_url_from_env(table: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``[database] url_env``: the URL, password included, from an environment variable
    instead of the file. Exactly one of ``url`` and ``url_env`` may be set."""
    table = dict(table)
    var = table.pop("url_env")
    if not isinstance(var, str) or not var:
        raise ConfigError("database.url_env", "must name an environment variable")
    if "url" in table:
        raise ConfigError("database.url_env", "set database.url or database.url_env, not both")
    value = env.get(var)
    if not value:
        raise ConfigError("database.url_env", f"environment variable {var} is not set")
    table["url"] = value
    return table


def _validate(config: Config) -> None:
    names = [t.name for t in config.topics]
    for i, topic in enumerate(config.topics):
        if not topic.name or not topic.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"topics[{i}].name", "must be letters, digits, '-' or '_'")
        if topic.name in names[:i]:
            raise ConfigError(f"topics[{i}].name", f"duplicate topic {topic.name!r}")
        for slug, attr in TOPIC_FIELDS.items():
            if topic.mapping(slug) is not None and not getattr(config.providers, slug).enabled:
                raise ConfigError(f"topics[{i}].{attr}", f"names provider {slug}, which is not enabled")
    secret = config.security.token_secret
    if secret is not None and len(secret.reveal().encode()) < 16:
        raise ConfigError("security.token_secret_env", "the secret must be at least 16 bytes")
    if not config.smtp.domains:
        raise ConfigError("smtp.domains", "must name at least one domain")
    if not 0 <= config.http.trusted_proxy_hops <= 5:
        raise ConfigError("http.trusted_proxy_hops", "must be between 0 and 5")
    if not config.http.public_url.startswith(("https://", "http://")):
        raise ConfigError("http.public_url", "must be an http(s) URL")
    for key, value in (("smtp.port", config.smtp.port), ("http.port", config.http.port)):
        if not 0 <= value <= 65535:
            raise ConfigError(key, "must be between 0 and 65535")
    if config.smtp.max_message_bytes <= 0:
        raise ConfigError("smtp.max_message_bytes", "must be positive")
    for key, value in (
        ("smtp.max_connections", config.smtp.max_connections),
        ("smtp.max_connections_per_peer", config.smtp.max_connections_per_peer),
        ("smtp.timeout_seconds", config.smtp.timeout_seconds),
        ("smtp.stress_timeout_seconds", config.smtp.stress_timeout_seconds),
    ):
        if value <= 0:
            raise ConfigError(key, "must be positive")
    if config.inbound.retry_max_seconds <= 0:
        raise ConfigError("inbound.retry_max_seconds", "must be positive")
    for i, slug in enumerate(config.consent.provider_resubscribes):
        if slug not in PROVIDER_SLUGS:
            raise ConfigError(f"consent.provider_resubscribes[{i}]", f"unknown provider {slug!r}")
    relay = config.confirmations
    if (relay.username or relay.password) and not relay.starttls and not _loopback(relay.smtp_host):
        raise ConfigError(
            "confirmations.starttls", f"relay credentials are sent to {relay.smtp_host} only over TLS: set it to true"
        )


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine (where a relay's credentials never cross a network)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the configuration: ``path``, else ``$OPTOUT_HUB_CONFIG``, else the built-in defaults."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get(CONFIG_ENV) or None
    if path is None:
        return parse_config({}, env)
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse_config(data, env)
