"""The SQL store (SQLAlchemy 2.x Core; SQLite, PostgreSQL, MariaDB/MySQL)."""

from entitlements.adapters.sql.store import SqlStore, SqlUnitOfWork
from entitlements.adapters.sql.tables import metadata

__all__ = ["SqlStore", "SqlUnitOfWork", "metadata"]
