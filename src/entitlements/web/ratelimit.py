"""Slow down anyone guessing signing tokens.

Each client address may present a limited number of links that open nothing within a
window; past that, such links get a "try again later" page instead of the generic one.
A link that opens is never refused (signing tokens are 256-bit random values: the limit
cuts a guesser's noise, it does not guard the tokens), so nobody behind the same address
— an office behind one NAT — loses a real link to someone else's typos.

The count must be shared by every process of the host, or N workers allow N times the
limit: `SqlBadTokenLimiter` keeps it in the library's database (the default for a SQL
store), `RedisBadTokenLimiter` in Redis; `BadTokenLimiter` counts in one process only
(the memory store's, and tests').
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from entitlements.adapters.redis_hints import _redis, _url
from entitlements.errors import InvalidInput
from entitlements.ports import BadTokenLimit

__all__ = ["BadTokenLimit", "BadTokenLimiter", "RedisBadTokenLimiter", "SqlBadTokenLimiter"]

log = logging.getLogger(__name__)


class _Window:
    """What every count shares: at most ``attempts`` failures per client in ``window``
    seconds, checked when made; a refused client may try again after a window."""

    def __init__(self, attempts: int, window: float, clock: Callable[[], float]) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidInput("attempts", "must be a whole number of 1 or more", attempts)
        if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
            raise InvalidInput("window", "must be a number of seconds above 0", window)
        self.attempts = attempts
        self.window = window
        self._clock = clock

    def retry_after(self) -> int:
        return int(self.window)


def _client_key(client: str) -> str:
    """Addresses are personal data: the shared count keeps only their hash."""
    return hashlib.sha256(client.encode()).hexdigest()


class BadTokenLimiter(_Window):
    """At most ``attempts`` links that open nothing per client address within ``window``
    seconds; per process (each process of a host keeps its own count)."""

    def __init__(
        self,
        attempts: int = 20,
        window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 100_000,
    ) -> None:
        super().__init__(attempts, window, clock)
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, self._clock())) >= self.attempts

    def failed(self, client: str) -> None:
        with self._lock:
            self._record(client, self._clock())

    def _record(self, client: str, now: float) -> None:
        failures = self._recent(client, now)
        if client not in self._failures:
            if len(self._failures) >= self._max_clients:
                self._failures.pop(next(iter(self._failures)))
            self._failures[client] = failures
        failures.append(now)

    def fail(self, client: str) -> bool:
        with self._lock:
            now = self._clock()
            if len(self._recent(client, now)) >= self.attempts:
                return True
            self._record(client, now)
            return False


class SqlBadTokenLimiter(_Window):
    """The limit counted in the library's database (table ``ent_signing_failures``,
    migration ``0011``), so every process of the host shares it.

    A failure is inserted and committed first, then counted: the n-th failure to commit
    counts at least n, so no interleaving of processes lets more than ``attempts``
    through (under contention a few may be refused early). Rows older than the window
    are deleted as failures arrive. If the database cannot be reached (or is not
    migrated yet), the count falls back to this process, and says so in the log.
    """

    def __init__(
        self,
        engine: Engine,
        attempts: int = 20,
        window: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(attempts, window, clock)
        if not isinstance(engine, Engine):
            raise InvalidInput("engine", "must be a SQLAlchemy Engine", engine)
        self._engine = engine
        self._fallback = BadTokenLimiter(attempts, window)

    def _count(self, key: str, since: int) -> int:
        from entitlements.adapters.sql.tables import signing_failures as f

        with self._engine.connect() as connection:
            counted = connection.execute(
                sa.select(sa.func.count())
                .select_from(f)
                .where(f.c.client == key, f.c.at_ms > since)
            ).scalar_one()
        return int(counted)

    def _shared(self, client: str) -> bool:
        from entitlements.adapters.sql.tables import signing_failures as f

        key, now = _client_key(client), int(self._clock() * 1000)
        since = now - int(self.window * 1000)
        if self._count(key, since) >= self.attempts:
            return True
        with self._engine.begin() as connection:
            connection.execute(f.insert().values(client=key, at_ms=now))
        over = self._count(key, since) > self.attempts
        try:
            with self._engine.begin() as connection:
                connection.execute(f.delete().where(f.c.at_ms <= since))
        except sa.exc.SQLAlchemyError:  # housekeeping only: the next failure prunes
            pass
        return over

    def fail(self, client: str) -> bool:
        try:
            return self._shared(client)
        except sa.exc.SQLAlchemyError as error:
            log.warning("bad-token limit counted in this process only: %s", error)
            return self._fallback.fail(client)


class RedisBadTokenLimiter(_Window):
    """The limit counted in Redis (extra ``redis``): one counter per client address and
    window, incremented atomically, expiring with its window. Windows are fixed, so a
    client may fail up to twice ``attempts`` times across a window's boundary."""

    def __init__(
        self,
        redis: str | Any,
        attempts: int = 20,
        window: float = 600.0,
        prefix: str = "entitlements:bad-token:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(attempts, window, clock)
        self._prefix = prefix
        self._client = _redis().Redis.from_url(_url(redis)) if isinstance(redis, str) else redis
        self._fallback = BadTokenLimiter(attempts, window)

    def fail(self, client: str) -> bool:
        bucket = int(self._clock() // self.window)
        key = f"{self._prefix}{_client_key(client)}:{bucket}"
        try:
            pipeline = self._client.pipeline()
            pipeline.incr(key)
            pipeline.expire(key, int(self.window) + 1)
            count, _ = pipeline.execute()
        except Exception as error:  # Redis down: count here rather than fail the page
            log.warning("bad-token limit counted in this process only: %s", error)
            return self._fallback.fail(client)
        return int(count) > self.attempts


def default_limiter(store: object) -> BadTokenLimit:
    """The database's shared count for a SQL store, else this process's."""
    engine = getattr(store, "engine", None)
    return SqlBadTokenLimiter(engine) if isinstance(engine, Engine) else BadTokenLimiter()
