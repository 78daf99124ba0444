"""Alembic environment: runs against the engine handed in by ``adapters.db.upgrade``."""

from alembic import context
from sqlalchemy import create_engine

from adapters.models import Base

config = context.config
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    if connection.in_transaction():
        connection.commit()
