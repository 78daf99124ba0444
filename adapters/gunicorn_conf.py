"""gunicorn settings and hooks for optout-hub (README "Running on PostgreSQL with several
processes"): ``gunicorn -c python:adapters.gunicorn_conf 'webhooks:create_app()'``.

It lives in the core, not in ``webhooks``, because gunicorn's master imports it before any
worker starts: importing the ``webhooks`` package there would load the whole app, and with it
prometheus-client, before the multiprocess directory below is set.

Loaded by gunicorn's master process before any worker starts, this module:

- reads the configuration once: a bad one ends start-up with the one line
  ``optout-hub: config error: <key>: <reason>`` and exit status 2, before a worker exists;
- routes gunicorn's own error and access logs through the app's logging (``[logging]``:
  timestamps, levels, JSON if asked, the request id);
- turns on prometheus-client's multiprocess mode in a private directory made for this master,
  so that one scrape of ``/metrics`` sums every worker's counters (README "Logs and metrics").

Its settings are the production defaults; command-line options override them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from typing import Any

from adapters.config import load_config
from adapters.errors import ConfigError
from adapters.logs import logging_config

# prometheus-client's own variable (adapters.metrics.MULTIPROCESS_ENV), set before any worker
# imports it: it reads the variable once, at import. A directory made for this master alone.
_metrics_dir = tempfile.mkdtemp(prefix="optout-hub-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
# Imported now, in the master, not inside the hook: a hook runs from gunicorn's signal handling,
# where an import can be interrupted by the next signal.
_mark_process_dead: Any = importlib.import_module("prometheus_client.multiprocess").mark_process_dead

try:
    _config = load_config()
except ConfigError as _exc:
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    print(f"optout-hub: config error: {_exc}", file=sys.stderr, flush=True)
    sys.exit(2)

bind = f"{_config.http.host}:{_config.http.port}"
workers = 4
# Sync workers read one request at a time: a reverse proxy buffers whole requests in front.
timeout = 30
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
forwarded_allow_ips = "127.0.0.1"
accesslog = "-"
logconfig_dict = logging_config(_config.logging, gunicorn=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker's live gauges go with it; its counters stay in the sum."""
    _mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    shutil.rmtree(_metrics_dir, ignore_errors=True)
