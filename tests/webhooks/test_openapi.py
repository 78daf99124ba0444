"""The OpenAPI document (``webhooks/openapi.py``): served without a token, valid OpenAPI 3.1,
and the same routes as the app's URL map, so a new route cannot go undocumented."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from flask import Blueprint
from openapi_spec_validator import validate

from adapters.hub import Hub
from adapters.providers import PROVIDER_MODULES
from tests.support.servers import LiveServer
from webhooks import create_app
from webhooks.openapi import API_PREFIX, ONE_CLICK_RULE, OPERATIONS, build_document

METHODS = {"get", "post", "put", "patch", "delete"}


def _served(url: str) -> dict[str, Any]:
    r = requests.get(f"{url}/api/v1/openapi.json", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


def _operations(document: dict[str, Any], prefix: str) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        if path.startswith(prefix)
        for method in item
        if method in METHODS
    }


def test_served_without_a_token_and_valid_openapi_3_1(live_app: LiveServer) -> None:
    document = _served(live_app.url)
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_api_rule_is_documented_and_every_documented_path_is_served(hub: Hub) -> None:
    app = create_app(hub=hub)
    served = {
        (re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(API_PREFIX)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert served == _operations(build_document(app), API_PREFIX)
    assert len(served) == len(OPERATIONS) - 1  # and the one-click POST


def test_a_new_api_route_without_an_operation_is_refused(hub: Hub) -> None:
    app = create_app(hub=hub)
    extra = Blueprint("extra", __name__, url_prefix=API_PREFIX)
    extra.add_url_rule("/undocumented", "undocumented", lambda: "")
    app.register_blueprint(extra)
    with pytest.raises(LookupError, match="GET /api/v1/undocumented"):
        build_document(app)


def test_webhooks_come_from_each_providers_spec(live_app: LiveServer) -> None:
    document = _served(live_app.url)
    for slug, module in PROVIDER_MODULES.items():
        spec = module.WEBHOOK
        if spec is None:  # no webhooks (Constant Contact): no route, nothing described
            assert not any(path.startswith(f"/webhooks/{slug}") for path in document["paths"])
            continue
        path = f"/webhooks/{slug}" + re.sub(r"<([^<>]+)>", r"{\1}", spec.url.path)
        post = document["paths"][path]["post"]
        assert post["security"] == []
        assert set(post["requestBody"]["content"]) == {spec.media_type}
        assert {p["name"] for p in post.get("parameters", ()) if p["in"] == "header"} == set(spec.signature_headers)
        assert {str(spec.refusal_status), "400", "404", "413", "503"} <= set(post["responses"])
        assert ("get" in document["paths"][path]) is spec.url.get_check
    assert {"X-Twilio-Email-Event-Webhook-Signature", "X-HubSpot-Signature-v3"} <= {
        p["name"] for item in document["paths"].values() for op in item.values() for p in op.get("parameters", ())
    }


def test_one_click_and_the_api_answers(live_app: LiveServer) -> None:
    document = _served(live_app.url)
    one_click = document["paths"][ONE_CLICK_RULE.replace("<token>", "{token}")]
    assert set(one_click) == {"post"}
    assert {"200", "400", "404", "413", "503"} == set(one_click["post"]["responses"])
    for path, method in _operations(document, API_PREFIX):
        operation = document["paths"][path][method.lower()]
        if operation.get("security") == []:
            continue
        assert {"401", "503"} <= set(operation["responses"]), (method, path)
        assert operation["responses"]["503"]["headers"]["Retry-After"]["required"] is True
