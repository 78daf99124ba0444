"""outbox ids never reused on SQLite (AUTOINCREMENT): a compacted push keeps its id

Revision ID: 0018_outbox_ids_not_reused
Revises: 0017_push_action_scope

A compacted push keeps its outbox id in push_confirmations, and the readers order pushes by
it. SQLite gives a new row the largest id in the table plus one, so once compaction had
moved the newest rows out, the next pushes took their ids again: compacting those failed on
push_confirmations' primary key, and they sorted before older pushes. With AUTOINCREMENT
SQLite never hands out an id again; its counter starts past every id the outbox and
push_confirmations hold. The outbox is rebuilt (copied whole) to declare it. PostgreSQL's
sequence never reused one: nothing to do there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018_outbox_ids_not_reused"
down_revision: str | Sequence[str] | None = "0017_push_action_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LAST_ID = "SELECT max(id) FROM (SELECT max(id) AS id FROM outbox UNION ALL SELECT max(id) FROM push_confirmations)"


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("outbox", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass
    if autoincrement:  # the copy set the counter to the outbox's largest id; compacted ones count too
        op.execute("DELETE FROM sqlite_sequence WHERE name = 'outbox'")
        op.execute(f"INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', coalesce(({LAST_ID}), 0)")


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
