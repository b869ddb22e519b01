"""Wake-up pushes from the engine for the change-feed follower: PostgreSQL ``LISTEN``
(the migrations add a trigger that notifies on every feed insert) and SQLite's
``PRAGMA data_version`` (it moves when another connection commits to the file). They
only make the follower read sooner; what changed is always read from the feed."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy.engine import Engine

__all__ = ["PostgresNotify", "SqliteDataVersion", "hints_for"]

CHANNEL = "entitlements_changes"


class PostgresNotify:
    def __init__(self, engine: Engine) -> None:
        import psycopg

        url = engine.url.set(drivername="postgresql")
        self._connection: Any = psycopg.connect(
            url.render_as_string(hide_password=False), autocommit=True
        )
        self._connection.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> bool:
        for _ in self._connection.notifies(timeout=timeout, stop_after=1):
            return True
        return False

    def close(self) -> None:
        self._connection.close()


class SqliteDataVersion:
    POLL = 0.002

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False)
        self._version = self._read()

    def _read(self) -> int:
        return int(self._connection.execute("PRAGMA data_version").fetchone()[0])

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            current = self._read()
            if current != self._version:
                self._version = current
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.POLL)

    def close(self) -> None:
        self._connection.close()


def hints_for(engine: Engine) -> list[Any]:
    """The pushes this engine offers (none for MariaDB/MySQL: the follower polls)."""
    name = engine.dialect.name
    if name == "postgresql" and engine.dialect.driver == "psycopg":
        return [PostgresNotify(engine)]
    database = engine.url.database
    if name == "sqlite" and database not in (None, "", ":memory:"):
        return [SqliteDataVersion(database)]
    return []
