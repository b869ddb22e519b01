"""The schema's migrations (Alembic), shipped inside the package.

``upgrade(connection)`` brings a database to the latest schema; ``downgrade(connection,
"base")`` removes it. The version is kept in ``ent_alembic_version`` so that it never
collides with the host's own Alembic history.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

__all__ = ["VERSION_TABLE", "config", "downgrade", "upgrade"]

VERSION_TABLE = "ent_alembic_version"
HERE = Path(__file__).parent


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    command.upgrade(config(connection), revision)


def downgrade(connection: Connection, revision: str = "base") -> None:
    command.downgrade(config(connection), revision)
