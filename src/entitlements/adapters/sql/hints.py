"""Wake-up pushes from the engine for the change-feed follower: PostgreSQL ``LISTEN``
(writers send ``NOTIFY`` after they commit, see `CommitNotices`) and SQLite's
``PRAGMA data_version`` (it moves when another connection commits to the file). They
only make the follower read sooner; what changed is always read from the feed."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy.engine import Engine

__all__ = ["CommitNotices", "PostgresNotify", "SqliteDataVersion", "hints_for"]

CHANNEL = "entitlements_changes"
log = logging.getLogger("entitlements.coherence")


class CommitNotices:
    """PostgreSQL: tells other processes' followers that the feed moved, after the
    writing transaction committed and never inside it.

    PostgreSQL serializes the commits of every transaction that called NOTIFY in a
    database on one lock. A NOTIFY inside a consumption would hold the counter's row lock
    while waiting there, so writers of one owner, and every host transaction that
    notifies, would queue behind each other. Here a commit only sets a flag (about a
    microsecond); a thread of this process sends one ``NOTIFY`` on a pooled connection in
    a transaction of its own, then waits ``interval`` seconds before it sends again, so a
    burst of commits costs one wake-up per interval, whatever the number of writes or
    owners. A notice is a hint: if it cannot be sent, followers still poll the feed
    within their ``max_staleness``."""

    interval = 0.05
    """Seconds between two notices from one process: the most a wake-up is delayed."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._wanted = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.sent = 0
        """Notices sent by this process."""

    def committed(self) -> None:
        """A transaction that wrote to the feed has committed: wake followers soon."""
        self._wanted.set()
        if self._thread is None or self._pid != os.getpid():
            self._start()

    def _start(self) -> None:
        with self._guard:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()  # forked: the parent's thread did not come along
            self._thread = threading.Thread(
                target=self._run, name="entitlements-commit-notices", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            self._send()
            time.sleep(self.interval)

    def _send(self) -> None:
        try:
            # the driver's connection, out of the pool: the host's statement listeners
            # (and statement counts) see the library's statements, not this hint
            connection = self._engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute(f"NOTIFY {CHANNEL}")
                cursor.close()
                connection.commit()
            finally:
                connection.close()
            self.sent += 1
        except Exception:  # a hint: followers poll the feed anyway
            log.debug("entitlements: a change notice could not be sent", exc_info=True)


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
