"""The environment the suite runs with: the secrets ``*_env`` config keys resolve to, and the
variable that adds PostgreSQL to the database backends."""

from __future__ import annotations

PG_ENV = "OPTOUT_HUB_TEST_DATABASE_URL"
TEST_SECRET = "test-token-secret-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789"
