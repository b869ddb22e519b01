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

__all__ = ["HEAD", "VERSION_TABLE", "at_head", "config", "downgrade", "upgrade"]

VERSION_TABLE = "ent_alembic_version"
HEAD = "0012"
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


def upgrade(connection: Connection, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(config(connection), revision)


def downgrade(connection: Connection, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(config(connection), revision)
