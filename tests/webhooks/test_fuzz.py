"""schemathesis against the live app over real HTTP, from the app's own OpenAPI document
(``webhooks/openapi.py``), on every database: schema-valid and schema-violating requests to
every documented operation must never get a 5xx (the store is up) and every answer must match
the document (status, content type, headers, body).

The run is short by default; ``OPTOUT_HUB_LONG_FUZZ=1`` makes it long (README "Development").
Each run prints its figures: requests tried, 5xx answers.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters.config import Config
from adapters.hub import Hub
from tests.support import hubspot
from tests.support.environment import LONG_FUZZ
from tests.support.pages import TOPICS, issue_token
from tests.support.servers import LiveServer
from webhooks import create_app

EXAMPLES = 500 if LONG_FUZZ else 10  # per operation and generation mode
MAILCHIMP_SECRET = "mailchimp-webhook-secret-for-the-fuzz-run"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
TRANSPORT_KEYS = ("method", "url", "headers", "params", "cookies", "json", "data", "files")


@pytest.fixture
def fuzz_hub(make_config: Callable[..., Config], make_hub: Callable[[Config], Hub]) -> Hub:
    """Every provider enabled: SendGrid without a public key, so fuzzed bodies reach its parser;
    HubSpot's deliveries are signed by the test; Mailchimp's secret is put in some paths."""
    env = {
        "MAILCHIMP_API_KEY": "0123456789abcdef-us6",
        "MAILCHIMP_WEBHOOK_SECRET": MAILCHIMP_SECRET,
        "SENDGRID_API_KEY": "SG.fuzz",
        "HUBSPOT_ACCESS_TOKEN": hubspot.TOKEN,
        "HUBSPOT_CLIENT_SECRET": hubspot.SECRET,
    }
    providers = {
        "mailchimp": {"enabled": True, "lists": ["abc123"]},
        "sendgrid": {"enabled": True, "webhook_public_key_env": ""},
        "hubspot": {"enabled": True},
    }
    return make_hub(make_config({"topics": TOPICS, "providers": providers}, env=env))


def _send(session: requests.Session, kwargs: dict[str, Any], sign: Callable[[bytes], dict[str, str]] | None):
    prepared = session.prepare_request(requests.Request(**{k: kwargs[k] for k in TRANSPORT_KEYS if k in kwargs}))
    if sign is not None:
        prepared.headers.update(sign(prepared.body or b""))
    return session.send(prepared, timeout=30)


def _real_addresses(value: Any) -> Any:
    """``value`` with every string under an ``email`` key made a real address, so that
    requests get past address checks and their answers on success are checked too."""
    if isinstance(value, list):
        return [_real_addresses(v) for v in value]
    if isinstance(value, dict):
        return {
            k: f"fuzz.{len(v)}@example.com" if k == "email" and isinstance(v, str) else _real_addresses(v)
            for k, v in value.items()
        }
    return value


@dataclasses.dataclass
class Run:
    """One app under fuzzing, and what was sent to it."""

    url: str
    headers: dict[str, str]
    genuine: dict[str, str]  # path parameters' real values: a one-click token, the Mailchimp secret
    sign_hubspot: Callable[[bytes], dict[str, str]]
    session: requests.Session = dataclasses.field(default_factory=requests.Session)
    tally: Counter[str] = dataclasses.field(default_factory=Counter)

    def fuzz(self, operation: Any, mode: GenerationMode) -> None:
        """Send ``operation`` the cases schemathesis generates in ``mode``; check each answer."""
        checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not LONG_FUZZ,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), genuine=st.booleans())
        def call(case: Any, genuine: bool) -> None:
            """``genuine``: the real token or secret in the path, a valid HubSpot signature,
            real addresses in the body, so that the request gets further."""
            if genuine:
                if case.path_parameters:
                    case.path_parameters = {k: self.genuine.get(k, v) for k, v in case.path_parameters.items()}
                if isinstance(case.body, dict | list):
                    case.body = _real_addresses(case.body)
            kwargs = case.as_transport_kwargs(base_url=self.url, headers=self.headers)
            sign = self.sign_hubspot if genuine and operation.path == "/webhooks/hubspot" else None
            response = _send(self.session, kwargs, sign)
            self.tally["requests"] += 1
            self.tally["5xx"] += response.status_code >= 500
            case.validate_response(response, checks=checks, headers=self.headers, transport_kwargs=kwargs)

        sent = self.tally["requests"]
        try:
            call()
        except Unsatisfiable:
            # no request can violate this operation's schema (no JSON body, free-text parameters)
            if mode is not GenerationMode.NEGATIVE or self.tally["requests"] > sent:
                raise
            self.tally["operations with no schema-violating request"] += 1


def test_no_5xx_and_every_answer_as_documented(
    fuzz_hub: Hub, serve_app: Callable[[Any], LiveServer], admin_headers: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    server = serve_app(create_app(hub=fuzz_hub))
    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")
    run = Run(
        server.url,
        admin_headers,
        {"token": issue_token(fuzz_hub, "fuzz@example.com"), "secret": MAILCHIMP_SECRET},
        lambda body: hubspot.sign(body, when=fuzz_hub.clock()),
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run.fuzz(operation, mode)
    with capsys.disabled():
        print(
            f"\nschemathesis on {fuzz_hub.engine.dialect.name}: {run.tally['requests']} requests tried,"
            f" {run.tally['5xx']} answered 5xx ({run.tally['operations with no schema-violating request']}"
            " operations with no schema-violating request)"
        )
    assert run.tally["5xx"] == 0 and run.tally["requests"] >= len(operations)
