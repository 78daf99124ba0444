"""Typed configuration, loaded once from TOML and passed in (README "Configuration").

Every section is a frozen dataclass. A key ending in ``_env`` names an environment
variable that holds a secret; the resolved value sits beside it, in the field of the same
name without ``_env``, as a :class:`Secret` whose repr never shows it. An empty ``_env``
value means "not used". A bad file stops start-up with one :class:`ConfigError` naming the
key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from adapters.addresses import normalize_domain
from adapters.errors import AddressError, ConfigError
from adapters.events import Kind

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

CONFIG_ENV = "OPTOUT_HUB_CONFIG"
TOPIC_FIELDS = {
    "mailchimp": "mailchimp_list",
    "sendgrid": "sendgrid_group",
    "hubspot": "hubspot_subscription",
    "constant_contact": "constant_contact_list",
}
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
    audit_signing_key_env: str = "OPTOUT_HUB_AUDIT_SIGNING_KEY"  # base64 raw Ed25519 private key
    erasure_key_env: str = "OPTOUT_HUB_ERASURE_KEY"  # keys the hashes of erased addresses (README "Erasure")
    feed_token_env: str = "OPTOUT_HUB_FEED_TOKEN"  # reads GET /api/v1/changes and nothing else
    token_secret: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    previous_token_secrets: tuple[Secret, ...] = dataclasses.field(default=(), repr=False, compare=False)
    admin_token: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    audit_signing_key: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    erasure_key: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    feed_token: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Admin:
    """One named admin (``[[admins]]``): the name every action they take is recorded under."""

    name: str
    token_env: str = ""
    token: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


LEGACY_ADMIN_NAME = "admin"
"""The name recorded for the single ``[security] admin_token_env`` token."""
MAX_ADMIN_NAME = 200


@dataclasses.dataclass(frozen=True)
class Subscriber:
    """``[[subscribers]]``: a URL that receives every consent change of the ``events`` kinds
    (empty: all), signed with the Standard Webhooks secret (``whsec_<base64>``) in ``secret_env``
    (README "Change feed and outbound webhooks")."""

    url: str
    secret_env: str = ""
    events: tuple[str, ...] = ()
    timeout_seconds: float = 10.0
    secret: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class Topic:
    name: str
    title: str = ""
    mailchimp_list: str | None = None
    sendgrid_group: int | None = None
    hubspot_subscription: str | None = None
    constant_contact_list: str | None = None

    def mapping(self, provider: str) -> str | int | None:
        """What represents this topic at ``provider`` (``None``: the provider cannot)."""
        value: str | int | None = getattr(self, TOPIC_FIELDS[provider])
        return value


# Requests the hub may have in flight to one provider (README "Push-back"): Mailchimp allows 10
# concurrent connections per user; SendGrid and HubSpot limit requests per period instead, and
# 10 keeps their per-address calls well within those. HubSpot's burst limit is per account,
# 100 to 250 requests per 10 seconds by tier.
MAX_CONCURRENT_REQUESTS = {"mailchimp": 10, "sendgrid": 10, "hubspot": 10}
HUBSPOT_MAX_REQUESTS_PER_10_SECONDS = 250


@dataclasses.dataclass(frozen=True)
class MailchimpConfig:
    enabled: bool = False
    api_key_env: str = "MAILCHIMP_API_KEY"
    webhook_secret_env: str = "MAILCHIMP_WEBHOOK_SECRET"
    lists: tuple[str, ...] = ()
    base_url: str = ""
    timeout_seconds: float = 10.0
    batch_size: int = 500
    max_concurrent_requests: int = 5  # at most MAX_CONCURRENT_REQUESTS["mailchimp"]
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
    max_concurrent_requests: int = 5
    max_timestamp_age_seconds: int = 0  # 0: no limit (SendGrid retries for up to 24 h)
    global_opt_out: str = "global_suppression"  # or "groups" (README "Campaign and transactional mail")
    marketing_groups: tuple[int, ...] = ()  # with "groups": unsubscribe groups besides the topics'
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
    max_concurrent_requests: int = 5
    requests_per_10_seconds: int = 100  # the Free/Starter burst limit; at most HUBSPOT_MAX_REQUESTS_PER_10_SECONDS
    access_token: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    client_secret: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class ConstantContactConfig:
    """README "Constant Contact". ``refresh_token_env`` holds the first refresh token only: the
    rotating tokens that follow live in the database. ``auth_url`` is the authorization server
    (``/oauth2/default/v1/authorize`` and ``/token`` below it)."""

    enabled: bool = False
    client_id: str = ""
    client_secret_env: str = "CONSTANT_CONTACT_CLIENT_SECRET"
    refresh_token_env: str = ""  # empty: authorize from /admin instead
    base_url: str = ""
    auth_url: str = ""
    poll_interval_minutes: int = 15
    timeout_seconds: float = 10.0
    requests_per_second: float = 4.0
    daily_requests: int = 10_000
    client_secret: Secret | None = dataclasses.field(default=None, repr=False, compare=False)
    refresh_token: Secret | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class ProvidersConfig:
    mailchimp: MailchimpConfig = MailchimpConfig()
    sendgrid: SendGridConfig = SendGridConfig()
    hubspot: HubSpotConfig = HubSpotConfig()
    constant_contact: ConstantContactConfig = ConstantContactConfig()

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
    # Settled pushes leave the outbox for push_confirmations, which every reader of pushes also
    # reads (README "Push-back to providers", Compaction).
    compact: bool = True
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
    format: str = "text"  # "text" lines with a timestamp, or "json": one object per line


@dataclasses.dataclass(frozen=True)
class ConsentConfig:
    """README "Consent". ``provider_resubscribes``: the providers whose report of the person's
    own resubscribe may lift an opt-out that came from that provider. All three by default;
    a list can only leave some out (stricter), never trust anything more."""

    provider_resubscribes: tuple[str, ...] = ("mailchimp", "sendgrid", "hubspot")


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """Where ``optout-hub smtp`` and ``optout-hub worker``, run alone, serve ``/metrics``
    (README "Logs and metrics"); 0 serves none. The HTTP app serves its own."""

    host: str = "127.0.0.1"
    smtp_port: int = 0
    worker_port: int = 0


@dataclasses.dataclass(frozen=True)
class ComplianceConfig:
    """README "Compliance". ``holidays``: ISO dates (``2026-12-25``) that are not business days
    for the 10-business-day limit, besides Saturdays and Sundays.
    ``transactional_suppress_hard_bounces`` (README "Campaign and transactional mail"): whether
    a hard bounce stops transactional mail too (a complaint always does; an unsubscribe never)."""

    holidays: tuple[str, ...] = ()
    transactional_suppress_hard_bounces: bool = False

    def holiday_dates(self) -> frozenset[date]:
        return frozenset(date.fromisoformat(day) for day in self.holidays)


@dataclasses.dataclass(frozen=True)
class ReconcileConfig:
    """README "Reconciliation": the worker pulls every provider's changes every
    ``interval_minutes`` (0: never; ``optout-hub reconcile`` still runs by hand)."""

    interval_minutes: float = 0.0


@dataclasses.dataclass(frozen=True)
class RetentionConfig:
    """README "Erasure": raw evidence older than ``evidence_days`` is purged (0: kept forever)."""

    evidence_days: int = 0


@dataclasses.dataclass(frozen=True)
class Config:
    database: DatabaseConfig = DatabaseConfig()
    smtp: SMTPConfig = SMTPConfig()
    http: HTTPConfig = HTTPConfig()
    security: SecurityConfig = SecurityConfig()
    topics: tuple[Topic, ...] = ()
    subscribers: tuple[Subscriber, ...] = ()
    providers: ProvidersConfig = ProvidersConfig()
    inbound: InboundConfig = InboundConfig()
    worker: WorkerConfig = WorkerConfig()
    confirmations: ConfirmationsConfig = ConfirmationsConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    consent: ConsentConfig = ConsentConfig()
    retention: RetentionConfig = RetentionConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    admins: tuple[Admin, ...] = ()
    reconcile: ReconcileConfig = ReconcileConfig()

    def topic(self, name: str) -> Topic | None:
        return next((t for t in self.topics if t.name == name), None)

    def admin_accounts(self) -> tuple[Admin, ...]:
        """Every admin who may sign in: the ``[[admins]]``, then the single
        ``[security] admin_token_env`` token as the admin named "admin"."""
        legacy = self.security.admin_token
        return self.admins + ((Admin(LEGACY_ADMIN_NAME, self.security.admin_token_env, legacy),) if legacy else ())


# --- loading -----------------------------------------------------------------------------

ARRAYS = ("topics", "providers", "admins", "subscribers")  # parsed apart from the plain tables

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
    admins_raw = data.pop("admins", [])
    if not isinstance(admins_raw, list):
        raise ConfigError("admins", "must be an array of tables ([[admins]])")
    subscribers_raw = data.pop("subscribers", [])
    if not isinstance(subscribers_raw, list):
        raise ConfigError("subscribers", "must be an array of tables ([[subscribers]])")
    providers_raw = data.pop("providers", {})
    if not isinstance(providers_raw, dict):
        raise ConfigError("providers", "must be a table")
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for key in data:
        if key not in hints or key in ARRAYS:
            raise ConfigError(key, "unknown key")
    for key, hint in hints.items():  # absent tables too: their default *_env names still resolve
        if key not in ARRAYS:
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
    values["admins"] = tuple(_admin(i, table, env) for i, table in enumerate(admins_raw))
    subscribers = []
    for i, table in enumerate(subscribers_raw):
        if not isinstance(table, dict) or "url" not in table or "secret_env" not in table:
            raise ConfigError(f"subscribers[{i}]", "needs url and secret_env")
        subscribers.append(_build(Subscriber, table, f"subscribers[{i}]", env))
    values["subscribers"] = tuple(subscribers)
    config = Config(**values)
    _validate(config)
    return config


def _admin(i: int, table: object, env: Mapping[str, str]) -> Admin:
    """One ``[[admins]]`` table: a name, and the environment variable holding its token."""
    for key in ("name", "token_env"):
        if not isinstance(table, dict) or not table.get(key):
            raise ConfigError(f"admins[{i}].{key}", "missing")
    admin = _build(Admin, table, f"admins[{i}]", env)
    if not admin.name.strip() or len(admin.name) > MAX_ADMIN_NAME:
        raise ConfigError(f"admins[{i}].name", f"must be 1 to {MAX_ADMIN_NAME} characters")
    return admin


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
    accounts = config.admin_accounts()  # the [[admins]], then the single token's "admin"
    for i, admin in enumerate(config.admins):
        others = accounts[:i] + accounts[i + 1 :]
        if admin.name in [a.name for a in others]:
            raise ConfigError(f"admins[{i}].name", f"duplicate admin {admin.name!r}")
        if admin.token in [a.token for a in others]:
            raise ConfigError(f"admins[{i}].token_env", "two admins share one token: give each their own")
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
    erasure_key = config.security.erasure_key
    if erasure_key is not None and len(erasure_key.reveal().encode()) < 16:
        raise ConfigError("security.erasure_key_env", "the key must be at least 16 bytes")
    if config.retention.evidence_days < 0:
        raise ConfigError("retention.evidence_days", "must be 0 (keep forever) or a number of days")
    if not config.smtp.domains:
        raise ConfigError("smtp.domains", "must name at least one domain")
    if not 0 <= config.http.trusted_proxy_hops <= 5:
        raise ConfigError("http.trusted_proxy_hops", "must be between 0 and 5")
    if not config.http.public_url.startswith(("https://", "http://")):
        raise ConfigError("http.public_url", "must be an http(s) URL")
    if config.logging.format not in ("text", "json"):
        raise ConfigError("logging.format", 'must be "text" or "json"')
    if config.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError("logging.level", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    for key, value in (
        ("smtp.port", config.smtp.port),
        ("http.port", config.http.port),
        ("metrics.smtp_port", config.metrics.smtp_port),
        ("metrics.worker_port", config.metrics.worker_port),
    ):
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
    if config.reconcile.interval_minutes < 0:
        raise ConfigError("reconcile.interval_minutes", "must be 0 (off) or positive")
    if config.inbound.retry_max_seconds <= 0:
        raise ConfigError("inbound.retry_max_seconds", "must be positive")
    for slug, most in MAX_CONCURRENT_REQUESTS.items():
        if not 1 <= getattr(config.providers, slug).max_concurrent_requests <= most:
            raise ConfigError(f"providers.{slug}.max_concurrent_requests", f"must be between 1 and {most}")
    if not 1 <= config.providers.hubspot.requests_per_10_seconds <= HUBSPOT_MAX_REQUESTS_PER_10_SECONDS:
        raise ConfigError(
            "providers.hubspot.requests_per_10_seconds",
            f"must be between 1 and {HUBSPOT_MAX_REQUESTS_PER_10_SECONDS} (HubSpot's highest burst limit)",
        )
    sendgrid = config.providers.sendgrid
    if sendgrid.global_opt_out not in ("global_suppression", "groups"):
        raise ConfigError("providers.sendgrid.global_opt_out", 'must be "global_suppression" or "groups"')
    if sendgrid.enabled and sendgrid.global_opt_out == "groups" and not sendgrid_marketing_groups(config):
        raise ConfigError(
            "providers.sendgrid.global_opt_out",
            '"groups" needs unsubscribe groups: [[topics]] sendgrid_group or providers.sendgrid.marketing_groups',
        )
    for i, slug in enumerate(config.consent.provider_resubscribes):
        if slug not in PROVIDER_SLUGS:
            raise ConfigError(f"consent.provider_resubscribes[{i}]", f"unknown provider {slug!r}")
    for i, day in enumerate(config.compliance.holidays):
        try:
            date.fromisoformat(day)
        except ValueError:
            raise ConfigError(f"compliance.holidays[{i}]", f"not a date (YYYY-MM-DD): {day!r}") from None
    _check_signing_key(config.security.audit_signing_key)
    _check_subscribers(config.subscribers)
    cc = config.providers.constant_contact
    if cc.enabled and not cc.client_id:
        raise ConfigError("providers.constant_contact.client_id", "missing (the application's API key)")
    if cc.poll_interval_minutes < 0:
        raise ConfigError("providers.constant_contact.poll_interval_minutes", "must be 0 (off) or more")
    if cc.requests_per_second <= 0 or cc.daily_requests <= 0:
        raise ConfigError("providers.constant_contact.requests_per_second", "the limits must be positive")
    relay = config.confirmations
    if (relay.username or relay.password) and not relay.starttls and not _loopback(relay.smtp_host):
        raise ConfigError(
            "confirmations.starttls", f"relay credentials are sent to {relay.smtp_host} only over TLS: set it to true"
        )


def _check_signing_key(key: Secret | None) -> None:
    if key is None:
        return
    try:
        raw = base64.b64decode(key.reveal(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise ConfigError("security.audit_signing_key_env", "must be a base64 raw Ed25519 private key (32 bytes)")


def sendgrid_marketing_groups(config: Config) -> tuple[int, ...]:
    """The SendGrid unsubscribe groups a global opt-out goes to in ``groups`` mode: every
    topic's ``sendgrid_group``, then ``marketing_groups``, each once."""
    topics = (t.sendgrid_group for t in config.topics if t.sendgrid_group is not None)
    return tuple(dict.fromkeys((*topics, *config.providers.sendgrid.marketing_groups)))


def _check_subscribers(subscribers: tuple[Subscriber, ...]) -> None:
    kinds = tuple(kind.value for kind in Kind)
    for i, sub in enumerate(subscribers):
        if not sub.url.startswith(("https://", "http://")):
            raise ConfigError(f"subscribers[{i}].url", "must be an http(s) URL")
        for j, kind in enumerate(sub.events):
            if kind not in kinds:
                raise ConfigError(f"subscribers[{i}].events[{j}]", f"must be one of {', '.join(kinds)}")
        if sub.timeout_seconds <= 0:
            raise ConfigError(f"subscribers[{i}].timeout_seconds", "must be positive")
        secret = sub.secret.reveal() if sub.secret else ""
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            key = b""
        if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise ConfigError(f"subscribers[{i}].secret_env", "must be whsec_ + base64 of 24 to 64 bytes")


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
