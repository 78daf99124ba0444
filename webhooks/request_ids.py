"""An id for every HTTP request (README "Logs and metrics"): the proxy's ``X-Request-Id`` when
it sends a sane one (nginx: ``proxy_set_header X-Request-Id $request_id``), else a new one. It
is in every log record of the request and in the answer's ``X-Request-Id``."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from adapters.logs import REQUEST_ID

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def init_app(app: Flask) -> None:
    @app.before_request
    def _assign() -> None:
        given = request.headers.get(HEADER, "")
        request_id = given if _SANE.fullmatch(given) else uuid.uuid4().hex
        g.request_id = request_id
        g.request_id_token = REQUEST_ID.set(request_id)

    @app.after_request
    def _answer(response: Response) -> Response:
        if "request_id" in g:
            response.headers[HEADER] = g.request_id
        return response

    @app.teardown_request
    def _forget(_: BaseException | None) -> None:
        if (token := g.pop("request_id_token", None)) is not None:
            REQUEST_ID.reset(token)
