"""Column types that behave the same on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect

__all__ = ["JSONDocument", "UtcDateTime", "key_string", "long_binary", "long_text", "row_id"]


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC on every engine. PostgreSQL stores ``timestamptz``; SQLite and
    MariaDB have no zone-aware type, so they store naive UTC (with microseconds) and the
    zone is re-attached on the way out."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the SQL store")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON documents; JSONB on PostgreSQL."""


def row_id() -> sa.types.TypeEngine[int]:
    """An auto-incrementing 64-bit key (SQLite only auto-increments INTEGER)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def key_string(length: int) -> sa.types.TypeEngine[str]:
    """An identifier compared byte for byte. MariaDB/MySQL compare strings
    case-insensitively by default, which would make owner ``Acme`` and ``acme`` one."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def long_text() -> sa.types.TypeEngine[str]:
    """Text up to 16 MB on MariaDB/MySQL too (their TEXT stops at 64 KB)."""
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def long_binary() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
