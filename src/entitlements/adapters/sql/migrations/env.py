"""Alembic environment for the shipped migrations: runs on the connection it is given."""

from __future__ import annotations

from alembic import context

from entitlements.adapters.sql.migrations import VERSION_TABLE
from entitlements.adapters.sql.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run these migrations through entitlements.adapters.sql.migrations.upgrade(connection)"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
