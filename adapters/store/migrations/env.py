"""Alembic environment: runs against the engine handed in by :func:`adapters.store.database.upgrade`.

On SQLite, batch migrations rebuild a table by copying it and dropping the old one; with
foreign keys enforced, dropping a table that other rows reference (``events``, under
``outbox``) fails. As SQLite's own procedure for such changes says, enforcement is switched
off around the migrations (it cannot change inside a transaction) and ``foreign_key_check``
must come back empty before they commit.
"""

from alembic import context
from sqlalchemy import Connection, Engine

from adapters.store.models import Base

config = context.config
engine: Engine = config.attributes["engine"]  # set by adapters.store.database.alembic_config


def set_foreign_keys(connection: Connection, state: str) -> None:
    """``PRAGMA foreign_keys`` on the driver's connection, outside SQLAlchemy's transaction."""
    driver = connection.connection.driver_connection
    assert driver is not None, "a checked-out connection has its driver connection"
    driver.execute(f"PRAGMA foreign_keys={state}")


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        set_foreign_keys(connection, "OFF")
    try:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
                raise RuntimeError(f"the migration left rows whose foreign keys point nowhere: {broken[:5]}")
        if connection.in_transaction():
            connection.commit()
    finally:
        if sqlite:
            set_foreign_keys(connection, "ON")
