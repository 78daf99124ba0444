"""Constant Contact: OAuth tokens, contact ids, the daily call budget, the poll's checkpoint

Revision ID: 0013_constant_contact
Revises: 0012_admin_names

Four small new tables (README "Constant Contact"); nothing existing is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_constant_contact"
down_revision: str | Sequence[str] | None = "0012_admin_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oauth_tokens",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("expires_at", Time, nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("dead", sa.Text(), nullable=True),
        sa.Column("auth_state", sa.String(length=64), nullable=True),
        sa.Column("auth_state_until", Time, nullable=True),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_oauth_tokens")),
    )
    op.create_table(
        "provider_contacts",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("email_key", sa.String(length=254), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("provider", "email_key", name=op.f("pk_provider_contacts")),
    )
    op.create_table(
        "provider_budget",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("blocked_until", Time, nullable=True),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_provider_budget")),
    )
    op.create_table(
        "provider_pulls",
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("since", Time, nullable=True),
        sa.Column("started_at", Time, nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("finished_at", Time, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_provider_pulls")),
    )


def downgrade() -> None:
    for table in ("provider_pulls", "provider_budget", "provider_contacts", "oauth_tokens"):
        op.drop_table(table)
