"""A bare Flask sink for bench/webhooks.py: reads the body, answers 200, stores nothing."""

from flask import Flask, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/sendgrid")
    def sink() -> tuple[str, int]:
        request.get_data()
        return "", 200

    return app
