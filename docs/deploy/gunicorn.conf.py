"""gunicorn settings for optout-hub behind nginx (docs/operations.md, "The HTTP side").

Install as /etc/optout-hub/gunicorn.conf.py; the systemd unit optout-hub-web.service runs
``gunicorn --config /etc/optout-hub/gunicorn.conf.py "webhooks:create_app()"``.
"""

# Only nginx on this host talks to gunicorn.
bind = "127.0.0.1:8025"
# Sync workers: one request at a time each, so nginx buffers whole requests in front of them.
workers = 4
timeout = 30
graceful_timeout = 30
keepalive = 5
# Requests are small: webhooks of at most [http] max_content_length, pages, the API.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# Trust X-Forwarded-* from the one proxy hop on this host, no other.
forwarded_allow_ips = "127.0.0.1"
# The app redacts tokens and the Mailchimp path secret in these lines itself.
accesslog = "-"
errorlog = "-"
