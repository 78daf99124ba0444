"""The OpenAPI 3.1 description of the HTTP routes other programs call (README "HTTP API"):
the JSON API under ``/api/v1``, every provider's webhook and the RFC 8058 one-click POST,
served without a token at ``GET /api/v1/openapi.json``.

The document is built from the app's own URL map, so it lists exactly the routes the app
serves: each ``/api/v1`` rule and the one-click POST take their operation from
:data:`OPERATIONS` (a rule missing there, or an entry with no rule, is a :class:`LookupError`),
and each provider's webhook is described from its :class:`~adapters.providers.webhook.WebhookSpec`
(URL rule, media type, signature headers, refusal status). Limits and enums come from the
constants the routes check.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from werkzeug.routing import Rule

from adapters.events import Kind, Source, Verification
from adapters.providers import PROVIDER_MODULES
from adapters.providers.webhook import WebhookSpec
from adapters.store.changes import DEFAULT_LIMIT as DEFAULT_CHANGES
from adapters.store.changes import MAX_LIMIT as MAX_CHANGES
from adapters.store.recipients import MAX_HEADERS_BATCH
from webhooks import api
from webhooks.errors import RETRY_AFTER_SECONDS

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")
API_PREFIX = "/api/v1"
ONE_CLICK_RULE = "/u/<token>"
MAX_CAMPAIGN = 200  # adapters.store.recipients refuses longer campaign names

JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
Schema = dict[str, Any]

NULLABLE_STRING: Schema = {"type": ["string", "null"]}
ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what was wrong, for people"}},
}
EVENT: Schema = {
    "type": "object",
    "required": ["id", "kind", "scope", "source", "verification", "occurred_at", "received_at"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"enum": [k.value for k in Kind]},
        "scope": {"type": "string", "description": "`global` or `topic:<name>`"},
        "source": {"enum": [s.value for s in Source]},
        "verification": {"enum": [v.value for v in Verification]},
        "actor": {**NULLABLE_STRING, "description": 'who acted (README "Consent"); null for older events'},
        "provider_event_id": NULLABLE_STRING,
        "occurred_at": {"type": "string", "format": "date-time"},
        "received_at": {"type": "string", "format": "date-time"},
        "reason": NULLABLE_STRING,
        "campaign": NULLABLE_STRING,
        "evidence_id": {"type": ["integer", "null"]},
    },
}
STATE: Schema = {
    "type": "object",
    "required": ["email", "suppressed", "scopes", "events"],
    "properties": {
        "email": {"type": "string"},
        "suppressed": {"type": "boolean"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
    },
}
COMPONENT_SCHEMAS: dict[str, Schema] = {"Error": ERROR, "Event": EVENT, "State": STATE}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str, *, html: bool = False) -> Schema:
    answer = _json(_ref("Error"), description)
    if html:  # the recipients' pages answer browsers (Accept: text/html) with a page
        answer["content"][HTML] = {"schema": {"type": "string"}}
    return answer


def _retry_later(*, html: bool = False) -> Schema:
    answer = _error("the store failed; retry after `Retry-After` seconds", html=html)
    answer["headers"] = {"Retry-After": {"schema": {"type": "integer", "const": RETRY_AFTER_SECONDS}, "required": True}}
    return answer


def _json_body(schema: Schema) -> Schema:
    return {"required": True, "content": {JSON: {"schema": schema}}}


BAD_INPUT = _error("bad input (a malformed body, a missing or invalid field); nothing stored")
TOO_LARGE = _error("body over `[http] max_content_length`")
REFUSED = _error("missing or invalid bearer token")
REFUSED["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}}
OPTIONAL_STRING = NULLABLE_STRING

OPERATIONS: dict[tuple[str, str], Schema] = {
    ("/api/v1/openapi.json", "GET"): {
        "summary": "This document",
        "security": [],
        "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
    },
    ("/api/v1/suppressions/<path:email>", "GET"): {
        "summary": "An address's state and history (the JSON of `optout-hub status`)",
        "parameters": [
            {
                "name": "category",
                "in": "query",
                "required": False,
                "schema": {"enum": ["marketing", "transactional"], "default": "marketing"},
                "description": 'README "Campaign and transactional mail"',
            }
        ],
        "responses": {
            "200": _json(_ref("State"), "the address's state"),
            "400": _error("not an address"),
            "404": _error("no such route: the path's address holds a line break, which no route matches"),
        },
    },
    ("/api/v1/suppressions", "POST"): {
        "summary": "Add one opt-out by hand, with a reason; or lift one (`resubscribe`, with `admin`)",
        "requestBody": _json_body(
            {
                "type": "object",
                "required": ["email", "reason"],
                "properties": {
                    "email": {"type": "string"},
                    "reason": {"type": "string", "minLength": 1},
                    "kind": {"enum": [k.value for k in Kind], "default": Kind.UNSUBSCRIBE.value},
                    "admin": {"type": ["string", "null"], "maxLength": api.MAX_ADMIN_NAME},
                    "topic": {**OPTIONAL_STRING, "description": "a name from `[[topics]]`; none: global"},
                },
            }
        ),
        "responses": {
            "201": _json(
                {
                    "type": "object",
                    "required": ["stored", "changed", "state"],
                    "properties": {
                        "stored": {"type": "boolean"},
                        "changed": {"type": "boolean"},
                        "state": _ref("State"),
                    },
                },
                "recorded; the address's state after it",
            ),
            "400": BAD_INPUT,
        },
    },
    ("/api/v1/suppressions/check", "POST"): {
        "summary": "Which of these addresses must not be mailed (globally, or for `topic`)",
        "requestBody": _json_body(
            {
                "type": "object",
                "required": ["emails"],
                "properties": {
                    "emails": {"type": "array", "items": {"type": "string"}, "maxItems": api.MAX_CHECK},
                    "topic": OPTIONAL_STRING,
                    "category": {"enum": ["marketing", "transactional"], "default": "marketing"},
                },
            }
        ),
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "required": ["suppressed", "invalid"],
                    "properties": {
                        "suppressed": {"type": "array", "items": {"type": "string"}},
                        "invalid": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "the inputs, as given, that are suppressed and that are not addresses",
            ),
            "400": BAD_INPUT,
        },
    },
    ("/api/v1/changes", "GET"): {
        "summary": 'Every consent change after a cursor, in commit order (README "Change feed and outbound webhooks")',
        "description": "The admin token, or `[security] feed_token_env`'s token, which reads this route only.",
        "parameters": [
            {
                "name": "after",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "the `next` of the previous page (opaque); none: from the start",
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_CHANGES, "default": DEFAULT_CHANGES},
            },
        ],
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "required": ["changes", "next"],
                    "properties": {
                        "changes": {"type": "array", "items": {"type": "object"}},
                        "next": {"type": "string"},
                    },
                },
                "the changes, oldest first, and the cursor to read on from",
            ),
            "400": _error("a cursor this hub did not issue, or a limit out of range"),
        },
    },
    ("/api/v1/audit/<path:email>", "GET"): {
        "summary": 'An address\'s full history: events, evidence, pushes and confirmations (README "Compliance")',
        "responses": {
            "200": _json(
                {"type": "object", "required": ["email", "events"]},
                "every event of the address with its evidence and pushes; none for an address never seen",
            ),
            "400": _error("not an address"),
            "404": _error("no such route: the path's address holds a line break, which no route matches"),
        },
    },
    ("/api/v1/subjects/<path:email>", "DELETE"): {
        "summary": 'Erase an address\'s personal data, keeping it suppressed (README "Erasure")',
        "responses": {
            "200": _json(
                {"type": "object", "required": ["address_hash", "erased_at", "already_erased", "removed"]},
                "erased (again: only what arrived since)",
            ),
            "400": _error("not an address"),
            "404": _error("no such route: the path's address holds a line break, which no route matches"),
            "409": _error("cannot be erased now: no erasure key, or pushes or mail still pending"),
        },
    },
    ("/api/v1/headers", "POST"): {
        "summary": "List-Unsubscribe headers for recipients (as `optout-hub headers` prints them)",
        "requestBody": _json_body(
            {
                "type": "object",
                "required": ["recipients"],
                "properties": {
                    "recipients": {
                        "type": "array",
                        "maxItems": MAX_HEADERS_BATCH,
                        "items": {
                            "type": "object",
                            "required": ["email"],
                            "properties": {
                                "email": {"type": "string"},
                                "topic": OPTIONAL_STRING,
                                "campaign": {"type": ["string", "null"], "maxLength": MAX_CAMPAIGN},
                            },
                        },
                    }
                },
            }
        ),
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "required": ["headers"],
                    "properties": {
                        "headers": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["email", "List-Unsubscribe", "List-Unsubscribe-Post"],
                                "properties": {
                                    "email": {"type": "string"},
                                    "List-Unsubscribe": {"type": "string"},
                                    "List-Unsubscribe-Post": {"const": "List-Unsubscribe=One-Click"},
                                },
                            },
                        }
                    },
                },
                "the two header values per recipient, in input order",
            ),
            "400": BAD_INPUT,
        },
    },
    (ONE_CLICK_RULE, "POST"): {
        "summary": "RFC 8058 one-click unsubscribe of the token's recipient",
        "security": [],
        "requestBody": {
            "required": True,
            "content": {
                media: {
                    "schema": {
                        "type": "object",
                        "required": ["List-Unsubscribe"],
                        "properties": {"List-Unsubscribe": {"const": "One-Click"}},
                    }
                }
                for media in (FORM, MULTIPART)
            },
        },
        "responses": {
            "200": {"description": "opted out: a page, no redirect, no cookie", "content": {HTML: {}}},
            "400": _error("the body is not `List-Unsubscribe=One-Click`", html=True),
            "404": _error("unknown, forged or malformed token", html=True),
            "413": _error("body over `[http] max_content_length`", html=True),
            "503": _retry_later(html=True),
        },
    },
}


def _openapi_path(rule: Rule) -> str:
    """``/api/v1/suppressions/<path:email>`` → ``/api/v1/suppressions/{email}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def _path_parameters(rule: Rule) -> list[Schema]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in sorted(rule.arguments)
    ]


def _methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def _operation(rule: Rule, method: str) -> Schema:
    """An ``/api/v1`` or one-click operation from :data:`OPERATIONS`, with the answers every
    such route shares."""
    operation = dict(OPERATIONS[rule.rule, method])
    responses = dict(operation["responses"])
    if operation.get("security") != []:  # behind the admin token, and reads or writes the store
        responses.setdefault("401", REFUSED)
        responses.setdefault("503", _retry_later())
    if method == "POST":
        responses.setdefault("413", TOO_LARGE)
    operation["responses"] = responses
    operation["operationId"] = rule.endpoint
    if rule.arguments:
        operation["parameters"] = _path_parameters(rule)
    return operation


def _webhook_operation(slug: str, spec: WebhookSpec, rule: Rule, method: str) -> Schema:
    """A provider's webhook, from its spec."""
    parameters = _path_parameters(rule) + [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
        for name in spec.signature_headers
    ]
    operation: Schema = {"operationId": f"{rule.endpoint}_{method.lower()}", "tags": ["webhooks"], "security": []}
    if parameters:
        operation["parameters"] = parameters
    refusal = _error(f"refused: {spec.refusal_message}")
    if method == "GET":
        operation["summary"] = f"{slug}'s check that the webhook URL answers"
        operation["responses"] = {
            "200": _json({"type": "object", "properties": {"status": {"const": "ok"}}}, "the URL answers"),
            str(spec.refusal_status): refusal,
            "404": _error(f"{slug} webhooks are not enabled"),
        }
        return operation
    body_schema: Schema = (
        {"type": "array", "items": {"type": "object"}} if spec.media_type == JSON else {"type": "object"}
    )
    operation["summary"] = f"A {slug} webhook delivery"
    operation["requestBody"] = {"required": True, "content": {spec.media_type: {"schema": body_schema}}}
    operation["responses"] = {
        "200": _json(
            {
                "type": "object",
                "required": ["events"],
                "properties": {
                    "events": {"type": "integer", "minimum": 0},
                    "stored": {"type": "integer", "minimum": 0},
                    "duplicates": {"type": "integer", "minimum": 0},
                },
            },
            "verified and stored (opt-outs found, how many were new), or nothing to store",
        ),
        "400": _error("a malformed delivery; nothing stored"),
        str(spec.refusal_status): refusal,
        "404": _error(f"{slug} webhooks are not enabled"),
        "413": TOO_LARGE,
        "503": _retry_later(),
    }
    return operation


def build_document(app: Flask) -> Schema:
    """The OpenAPI document of ``app``; a :class:`LookupError` names an ``/api/v1`` rule with no
    operation in :data:`OPERATIONS`, or an operation no rule serves."""
    paths: dict[str, dict[str, Schema]] = {}
    described: set[tuple[str, str]] = set()
    webhooks = {
        f"{slug}_webhook.{slug}_webhook": (slug, spec)
        for slug, module in PROVIDER_MODULES.items()
        if (spec := module.WEBHOOK) is not None  # a provider without webhooks (Constant Contact)
    }
    for rule in app.url_map.iter_rules():
        for method in _methods(rule):
            if (rule.rule, method) in OPERATIONS:
                operation = _operation(rule, method)
                described.add((rule.rule, method))
            elif rule.endpoint in webhooks:
                operation = _webhook_operation(*webhooks[rule.endpoint], rule, method)
            elif rule.rule.startswith(API_PREFIX):
                raise LookupError(f"{method} {rule.rule} has no operation in webhooks/openapi.py")
            else:
                continue
            paths.setdefault(_openapi_path(rule), {})[method.lower()] = operation
    if missing := set(OPERATIONS) - described:
        raise LookupError(f"operations with no route: {sorted(missing)}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "optout-hub",
            "version": "1",
            "description": "Opt-outs in from providers and mail clients; the JSON API for admins and senders.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": COMPONENT_SCHEMAS,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"adminToken": []}],
    }


@bp.get("/openapi.json")
def document() -> Response:
    return jsonify(build_document(current_app))
