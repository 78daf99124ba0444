"""The environment the suite runs with: the secrets ``*_env`` config keys resolve to, the
variable that adds PostgreSQL to the database backends, and the one that makes the fuzzing
tests long (README "Development")."""

from __future__ import annotations

import os

PG_ENV = "OPTOUT_HUB_TEST_DATABASE_URL"
LONG_FUZZ = os.environ.get("OPTOUT_HUB_LONG_FUZZ") == "1"
TEST_SECRET = "test-token-secret-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789"
