"""Mailchimp: webhook events in (verify, parse) and opt-outs pushed back out (API client).

The inbound section is pure (bytes in, events out); the push-back section talks HTTP through
an injected `requests.Session`.
"""

from __future__ import annotations

# --- inbound: webhook verification and parsing ----------------------------------------------


# --- push-back: API client ------------------------------------------------------------------
