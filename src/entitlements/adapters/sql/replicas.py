"""Reads from replicas (PostgreSQL streaming, MariaDB binlog with GTIDs), never older
than what this process needs.

A read may go to a replica only when the replica has replayed the primary's write-ahead
log at least up to the position this process *needs*: the end of its own last commit
(read-your-writes), the primary's position when its change-feed follower last read the
feed (so a cold read is never older than the invalidations it acted on), and the
primary's position at most ``max_lag`` seconds ago (so an owner nobody here has touched
is never read staler than that). Positions are compared exactly (PostgreSQL WAL LSNs, MariaDB
GTIDs per replication domain), not guessed from timings: each replica read first asks the replica how far it has replayed (one round
trip, which also finds a connection the replica dropped); one that fails is left alone
for a while. A replica that fails *during* a read after that question raises
`ConnectionLost` (retryable) like any lost connection. Writes, enforcement and the terms lock never come here:
only units of work opened ``read_only`` outside a host's transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import attrs
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

__all__ = ["ReadRouting", "Replica", "ReplicationLog", "covers", "parse_gtids", "parse_lsn"]

log = logging.getLogger("entitlements")

DOWN_FOR = 5.0
"""Seconds a replica that failed is left alone before it is tried again."""

Position = Mapping[int, int]
"""How far a server's log goes: per replication domain (PostgreSQL has one, 0), the
last position in it."""

_UNKNOWN: Position = {-1: 1 << 80}
"""Needed after a commit whose position could not be read: no replica qualifies."""


def parse_lsn(text: str | None) -> Position:
    """PostgreSQL's ``16/B374D848`` as a position ({} for none)."""
    if not text:
        return {}
    high, _, low = text.partition("/")
    return {0: (int(high, 16) << 32) + int(low, 16)}


def parse_gtids(text: str | None) -> Position:
    """MariaDB's ``0-1-42,1-2-7`` (domain-server-sequence) as a position."""
    found: dict[int, int] = {}
    for gtid in (text or "").split(","):
        if gtid.strip():
            domain, _, sequence = gtid.strip().split("-")
            found[int(domain)] = max(found.get(int(domain), 0), int(sequence))
    return found


def covers(replayed: Position, needed: Position) -> bool:
    return all(replayed.get(domain, -1) >= at for domain, at in needed.items())


def furthest(a: Position, b: Position) -> Position:
    return {d: max(a.get(d, -1), b.get(d, -1)) for d in {*a, *b}}


@attrs.frozen
class ReplicationLog:
    """How one engine says where its log is: on the primary, what it has written; on a
    replica, what it has applied."""

    written: sa.TextClause
    replayed: sa.TextClause
    parse: Callable[[str | None], Position]


LOGS = {
    "postgresql": ReplicationLog(
        sa.text("SELECT pg_current_wal_lsn()::text"),
        sa.text("SELECT pg_last_wal_replay_lsn()::text"),
        parse_lsn,
    ),
    "mysql": ReplicationLog(
        sa.text("SELECT @@gtid_binlog_pos"), sa.text("SELECT @@gtid_slave_pos"), parse_gtids
    ),
}


@attrs.define
class Replica:
    engine: Engine
    replayed: Position = attrs.field(factory=dict)
    down_until: float = 0.0
    reads: int = 0
    failures: int = 0

    @property
    def name(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)


class ReadRouting:
    """Where a read goes; see the module docstring for the rule."""

    def __init__(self, primary: Engine, replicas: Sequence[Engine], max_lag: float) -> None:
        self._primary = primary
        self._log = LOGS[primary.dialect.name]
        self.replicas = [Replica(engine) for engine in replicas]
        self.max_lag = max_lag
        self.needed: Position = {}
        self._learned_at = -float("inf")
        self._lock = threading.Lock()
        self.primary_reads = 0

    def _position(self, connection: Connection, query: sa.TextClause) -> Position:
        return self._log.parse(connection.execute(query).scalar())

    def after_commit(self, connection: Connection) -> None:
        """After a commit on the primary: its log position becomes needed. Never fails
        the write that committed: when the position cannot be read, reads go to the
        primary until it is learned again."""
        try:
            self._learned(self._position(connection, self._log.written))
        except exc.SQLAlchemyError:
            log.warning("entitlements: cannot read the primary's log position", exc_info=True)
            with self._lock:
                self.needed = _UNKNOWN
            self._learned_at = -float("inf")

    def forget(self) -> None:
        """A commit whose position was not read (the host's transaction committed it):
        the next read learns the primary's position first."""
        self._learned_at = -float("inf")

    def note_followed(self, connection: Connection) -> None:
        """After the follower read the feed on the primary."""
        self._learned(self._position(connection, self._log.written))
        self._learned_at = time.monotonic()

    def _learned(self, position: Position) -> None:
        """A position read on the primary after everything it must cover committed (so
        it also replaces an unknown one)."""
        with self._lock:
            self.needed = position if self.needed is _UNKNOWN else furthest(self.needed, position)

    def _learn_primary(self) -> None:
        """The primary's position when the last one known is older than ``max_lag``."""
        if time.monotonic() - self._learned_at <= self.max_lag:
            return
        with self._primary.connect() as connection:
            position = self._position(connection, self._log.written)
            connection.rollback()
        self._learned(position)
        self._learned_at = time.monotonic()

    def connect(self) -> Connection | None:
        """A connection to a replica that has replayed what is needed, or ``None`` (the
        caller reads from the primary). Never raises for a replica's sake."""
        live = [r for r in self.replicas if r.down_until <= time.monotonic()]
        if live:
            try:
                self._learn_primary()
            except exc.SQLAlchemyError:
                live = []  # the primary's own read will say what is wrong
        for replica in live:
            connection = self._try(replica)
            if connection is not None:
                replica.reads += 1
                return connection
        self.primary_reads += 1
        return None

    def _try(self, replica: Replica) -> Connection | None:
        needed = self.needed
        connection: Connection | None = None
        try:
            connection = replica.engine.connect()
            # asked every time: it is also what finds a connection the replica dropped, and
            # the answer replaces the last one (one URL may lead to several servers, or to
            # a replica rebuilt since: a position can go back)
            replica.replayed = self._position(connection, self._log.replayed)
            connection.rollback()
            if covers(replica.replayed, needed):
                return connection
        except exc.SQLAlchemyError:
            replica.failures += 1
            replica.down_until = time.monotonic() + DOWN_FOR
            log.warning(
                "entitlements: replica %s cannot be read; reading from the primary for %.0f s",
                replica.name,
                DOWN_FOR,
                exc_info=True,
            )
        if connection is not None:
            try:
                connection.close()
            except exc.SQLAlchemyError:
                log.debug("entitlements: closing a replica connection failed", exc_info=True)
        return None

    def health(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "reads_on_primary": self.primary_reads,
            "replicas": [
                {
                    "url": r.name,
                    "reads": r.reads,
                    "failures": r.failures,
                    "down": r.down_until > now,
                    "caught_up": covers(r.replayed, self.needed),
                }
                for r in self.replicas
            ],
        }
