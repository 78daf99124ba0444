"""suppressions as a rowid table on SQLite: opt-outs at random addresses write fewer pages

Revision ID: 0006_suppressions_rowid
Revises: 0005_recipient_counts

A WITHOUT ROWID table keeps whole rows in its primary-key B-tree, about 30 to a page, so
1,000 opt-outs at random addresses split and rewrite more pages than the table has rows to
add (1,272 WAL frames per 1,000-event delivery, measured). As a rowid table, new rows append
to the table's end and only the narrow (email_key, scope) index takes random inserts (585
frames). PostgreSQL has no such option: nothing to do there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_suppressions_rowid"
down_revision: str | Sequence[str] | None = "0005_recipient_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("suppressions", recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}):
        pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
