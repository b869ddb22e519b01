"""The schema's migrations (Alembic), shipped inside the package.

``upgrade(connection)`` brings a database to the latest schema; ``downgrade(connection,
"base")`` removes it. The version is kept in ``ent_alembic_version`` so that it never
collides with the host's own Alembic history.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "HEAD",
    "VERSION_TABLE",
    "at_head",
    "config",
    "downgrade",
    "forget_dropped_schema",
    "upgrade",
]

VERSION_TABLE = "ent_alembic_version"
HEAD = "0020"
"""The newest revision shipped (a test keeps it equal to Alembic's head)."""
HERE = Path(__file__).parent


def config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def at_head(connection: Connection) -> bool:
    """Whether the database is already at `HEAD` (checked without loading Alembic)."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return False
    versions = (
        connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    )
    return list(versions) == [HEAD]


def forget_dropped_schema(connection: Connection, probe: str) -> bool:
    """Clear a version table that outlived the tables it describes (``probe``, one of
    them, is gone): a host's ``metadata.drop_all()`` drops our tables but not the version
    table, which is not part of the metadata, and the next upgrade would otherwise
    believe the schema is still there."""
    inspector = sa.inspect(connection)
    if not inspector.has_table(VERSION_TABLE) or inspector.has_table(probe):
        return False
    connection.execute(sa.text(f"DELETE FROM {VERSION_TABLE}"))
    return True


def upgrade(connection: Connection, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(config(connection), revision)


def downgrade(connection: Connection, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(config(connection), revision)
