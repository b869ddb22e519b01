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
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["CommitNotices", "PostgresNotify", "SqliteDataVersion", "hints_for"]

CHANNEL = "entitlements_changes"
PROBE = "probe"

log = logging.getLogger("entitlements")


class CommitNotices:
    """PostgreSQL: tells other processes' followers that the feed moved, after the
    writing transaction committed and never inside it.

    PostgreSQL serializes the commits of every transaction that called NOTIFY in a
    database on one lock. A NOTIFY inside a consumption would hold the counter's row lock
    while waiting there, so writers of one owner, and every host transaction that
    notifies, would queue behind each other. Here a commit only sets a flag (about a
    microsecond); a thread of this process sends one ``NOTIFY`` on a connection of its own
    (outside the pool), then waits ``interval`` seconds before it sends again, so a burst
    of commits costs one wake-up per interval, whatever the number of writes or owners.
    One per engine and process (`of`): stores bound per request share it, and a forked
    child starts its own thread and connection. A notice is a hint: if it cannot be sent,
    followers still poll the feed within their ``max_staleness``."""

    interval = 0.05
    """Seconds between two notices from one process: the most a wake-up is delayed."""

    _by_engine: weakref.WeakKeyDictionary[Engine, CommitNotices] = weakref.WeakKeyDictionary()
    _shared = threading.Lock()

    @classmethod
    def of(cls, engine: Engine) -> CommitNotices:
        with cls._shared:
            found = cls._by_engine.get(engine)
            if found is None:
                found = cls._by_engine[engine] = cls(engine)
            return found

    def __init__(self, engine: Engine) -> None:
        self._url = engine.url.set(drivername="postgresql").render_as_string(False)
        self._engine = weakref.ref(engine)
        self.sent = 0
        """Notices sent by this process."""
        self._begin()

    def _begin(self) -> None:
        """Fresh state for this process (at creation, and in a forked child, where the
        parent's thread is gone and its locks and connection are not ours)."""
        self._pid = os.getpid()
        self._wanted = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._connection: Any = None

    def committed(self) -> None:
        """A transaction that wrote to the feed has committed: wake followers soon."""
        if self._pid != os.getpid():
            self._begin()
        self._wanted.set()
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._guard:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="entitlements-commit-notices", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        pid = self._pid
        while self._engine() is not None and pid == os.getpid():
            if not self._wanted.wait(timeout=60.0):
                continue
            self._wanted.clear()
            self._send()
            time.sleep(self.interval)

    def _send(self) -> None:
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            self._connection.execute(f"NOTIFY {CHANNEL}")
            self.sent += 1
        except Exception:  # a hint: followers poll the feed anyway
            log.debug("entitlements: a change notice could not be sent", exc_info=True)
            connection, self._connection = self._connection, None
            if connection is not None:
                try:
                    connection.close()
                except Exception:
                    log.debug("entitlements: closing a notice connection failed", exc_info=True)


class PostgresNotify:
    """``LISTEN`` on a connection of its own, outside every pool.

    Two ways it could go deaf without a word, both handled here: behind a transaction
    pooler (PgBouncer in transaction mode) the session that ran ``LISTEN`` is handed to
    other clients, so nothing ever arrives — a probe ``NOTIFY`` sent right after
    ``LISTEN`` tells, and a deaf listener is reported (``deaf``, a warning) instead of
    trusted; and a server restart breaks the connection — it is opened again and the
    follower woken, since notifications sent meanwhile were lost."""

    PROBE_TIMEOUT = 2.0

    def __init__(self, url: str) -> None:
        self._url = url
        self.deaf = False
        self.reconnects = 0
        self._connection: Any = None
        self._connect()
        if not self._probe():
            self.deaf = True
            log.warning(
                "entitlements: LISTEN on %s receives nothing (a transaction pooler in "
                "between?): the change feed is polled instead; give the store a direct "
                "listen_url= to be woken by pushes",
                sa.make_url(url).render_as_string(hide_password=True),
            )

    def _connect(self) -> None:
        import psycopg

        self._connection = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        self._connection.execute(f"LISTEN {CHANNEL}")

    def _probe(self) -> bool:
        import psycopg

        with psycopg.connect(self._url, autocommit=True, connect_timeout=5) as sender:
            sender.execute(f"NOTIFY {CHANNEL}, '{PROBE}'")
        for _ in self._connection.notifies(timeout=self.PROBE_TIMEOUT, stop_after=1):
            return True
        return False

    def wait(self, timeout: float) -> bool:
        if self.deaf:
            time.sleep(timeout)
            return False
        try:
            for _ in self._connection.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except Exception:
            log.info("entitlements: the LISTEN connection broke; opening it again")
            self._reopen(timeout)
            return True

    def _reopen(self, timeout: float) -> None:
        """Raises while the server cannot be reached: the caller waits and asks again."""
        try:
            self._connection.close()
        except Exception:
            log.debug("entitlements: closing a broken LISTEN connection failed", exc_info=True)
        time.sleep(min(timeout, 0.5))
        self._connect()
        self.reconnects += 1

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


def hints_for(engine: Engine, listen_url: str | None = None) -> list[Any]:
    """The pushes this engine offers (none for MariaDB/MySQL: the follower polls).
    ``listen_url``: where PostgreSQL's ``LISTEN`` goes when the engine's own URL leads
    through a transaction pooler (the primary, directly)."""
    name = engine.dialect.name
    if name == "postgresql" and engine.dialect.driver == "psycopg":
        url = sa.make_url(listen_url) if listen_url else engine.url
        return [PostgresNotify(url.set(drivername="postgresql").render_as_string(False))]
    database = engine.url.database
    if name == "sqlite" and database not in (None, "", ":memory:"):
        return [SqliteDataVersion(database)]
    return []
