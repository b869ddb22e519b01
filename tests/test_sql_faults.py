"""No driver error leaves the SQL store: connections killed under reads (from another
connection: ``pg_terminate_backend`` on PostgreSQL, ``KILL`` on MariaDB), lock waits that
time out, and deadlocks inside the savepoints of an atomic block all come out as the
library's own errors, classified the same on every engine."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from entitlements import (
    Busy,
    ConnectionLost,
    Entitlements,
    EntitlementsError,
    ManualClock,
    Owner,
    StorageError,
)
from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql.errors import translate
from entitlements.testing.contract import CATALOG, START

SERVERS = ["postgres", "mysql"]
ACME = Owner("organization", "acme")
GLOBEX = Owner("organization", "globex")

READS: dict[str, Callable[[Entitlements], Any]] = {
    "subscriptions.find": lambda e: e.subscriptions.find(ACME),
    "subscriptions.history": lambda e: e.subscriptions.history(ACME),
    "plans.list": lambda e: e.plans.list(),
    "plans.get": lambda e: e.plans.get("growth"),
    "audit.for_owner": lambda e: e.audit.for_owner(ACME),
    "overrides.list": lambda e: e.overrides.list(ACME),
    "usage.counter": lambda e: e.usage.counter(ACME, "api_calls"),
    "resolve": lambda e: e.resolve(ACME),
    "snapshot (cold)": lambda e: (e.invalidate(), e.snapshot(ACME)),
    "usage.check (cold)": lambda e: (e.invalidate(), e.usage.check(ACME, "api_calls")),
    "store.tenants": lambda e: e.store.tenants(),
}


class Killer:
    """Kills the connection that is about to run (or has just run) statement number
    ``at`` of the next call, from a connection of its own."""

    def __init__(self, store: SqlStore, url: str) -> None:
        self.store = store
        self.dialect = store.engine.dialect.name
        self.admin = sa.create_engine(url, poolclass=NullPool)
        self.at: int | None = None
        self.after = False
        self.seen = 0
        self.killed = 0
        event.listen(store.engine, "before_cursor_execute", self._before)
        event.listen(store.engine, "after_cursor_execute", self._after)

    def close(self) -> None:
        event.remove(self.store.engine, "before_cursor_execute", self._before)
        event.remove(self.store.engine, "after_cursor_execute", self._after)
        self.admin.dispose()

    @contextmanager
    def arm(self, at: int, *, after: bool = False) -> Iterator[None]:
        self.at, self.after, self.seen = at, after, 0
        try:
            yield
        finally:
            self.at = None

    def _before(self, conn: Any, cursor: Any, *args: Any) -> None:
        if self.at is not None and not self.after and self.seen == self.at:
            self._kill(conn)
        if self.at is not None and not self.after:
            self.seen += 1

    def _after(self, conn: Any, cursor: Any, *args: Any) -> None:
        if self.at is not None and self.after:
            if self.seen == self.at:
                self._kill(conn)
            self.seen += 1

    def _kill(self, conn: Any) -> None:
        raw = conn.connection.dbapi_connection
        with self.admin.connect() as admin:
            if self.dialect == "postgresql":
                pid = raw.info.backend_pid
                admin.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            else:
                admin.execute(sa.text(f"KILL CONNECTION {int(raw.thread_id())}"))
        self.killed += 1


@pytest.fixture(params=SERVERS)
def server(request, make_store):
    from conftest import server_url

    make_store(request.param)  # a migrated, empty database
    url = server_url(request.param)
    store = SqlStore.from_url(url, pool_pre_ping=False)
    ents = Entitlements(store, clock=ManualClock(START))
    for plan in CATALOG:
        ents.plans.define(plan, actor="ann")
    ents.subscriptions.subscribe(ACME, "growth", actor="ann", seats=3)
    ents.subscriptions.subscribe(GLOBEX, "growth", actor="ann", seats=3)
    ents.overrides.set_limit(ACME, "projects", 40, actor="ann", reason="deal")
    ents.usage.consume(ACME, "api_calls", 2)
    killer = Killer(store, url)
    yield ents, killer, url
    killer.close()
    ents.close()
    store.engine.dispose()


def _statements(ents: Entitlements, killer: Killer, read: Callable[[Entitlements], Any]) -> int:
    with killer.arm(10**9):
        read(ents)
        return killer.seen


@pytest.mark.parametrize("path", list(READS))
def test_a_connection_killed_under_a_read_is_a_library_error(server, path) -> None:
    ents, killer, _ = server
    read = READS[path]
    expected = read(ents)
    count = _statements(ents, killer, read)
    assert count > 0
    outcomes = []
    for at in range(count):
        for after in (False, True):
            with killer.arm(at, after=after):
                try:
                    read(ents)
                    outcomes.append("ok")
                except ConnectionLost as lost:
                    outcomes.append("lost" if lost.retryable else "lost, not retryable")
                except EntitlementsError as other:
                    pytest.fail(f"{path} statement {at}: {type(other).__name__}: {other}")
            # the next call works (the dead connection was discarded)
            assert _same(read(ents), expected)
    assert killer.killed >= count  # (the change feed's own reads may add statements)
    assert "lost" in outcomes, "a kill before a statement breaks the call"
    assert "lost, not retryable" not in outcomes, "a read that broke can be retried"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):  # (None, snapshot) from the cold paths
        a, b = a[-1], b[-1]
    if hasattr(a, "limits") and hasattr(a, "resolved_at"):
        return a.limits == b.limits and a.features == b.features
    return repr(a) == repr(b)


def test_a_connection_killed_before_a_write_commits_stores_nothing(server) -> None:
    ents, killer, _ = server
    with killer.arm(10**9):
        ents.subscriptions.change_seats(ACME, 4, actor="ann")
        count = killer.seen
    assert count > 0
    for at in range(count):
        state = ents.store.dump()
        with killer.arm(at), pytest.raises(ConnectionLost) as lost:
            ents.subscriptions.change_seats(ACME, 4 if at % 2 else 5, actor="ann")
        assert lost.value.retryable
        assert ents.store.dump() == state, f"statement {at}: a broken write stored something"
    assert ents.subscriptions.change_seats(ACME, 7, actor="ann").subscription.seats == 7


# -- lock timeouts and deadlocks ----------------------------------------------------------


@contextmanager
def lock_held(url: str, dialect: str) -> Iterator[None]:
    """Another connection holds ACME's terms lock (its revision row) until the block ends."""
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.connect() as other:
        other.begin()
        other.execute(
            sa.text(
                "SELECT * FROM ent_owner_revisions WHERE owner_kind = 'organization' "
                "AND owner_id = 'acme' FOR UPDATE"
            )
        ).all()
        try:
            yield
        finally:
            other.rollback()
    engine.dispose()


def impatient(url: str) -> SqlStore:
    """A store whose lock waits give up after a fraction of a second."""
    store = SqlStore.from_url(url)

    @event.listens_for(store.engine, "connect")
    def _short(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if store.engine.dialect.name == "postgresql":
            cursor.execute("SET lock_timeout = '300ms'")
            dbapi_connection.commit()
        else:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        cursor.close()

    return store


def test_a_lock_wait_that_times_out_is_busy_on_every_engine(server) -> None:
    ents, _, url = server
    store = impatient(url)
    waiting = Entitlements(store, clock=ManualClock(START))
    try:
        before = ents.store.dump()
        with lock_held(url, store.engine.dialect.name), pytest.raises(Busy) as busy:
            waiting.subscriptions.change_seats(ACME, 9, actor="ann")
        assert busy.value.retryable
        assert ents.store.dump() == before
        assert waiting.subscriptions.change_seats(ACME, 9, actor="ann").subscription.seats == 9
    finally:
        waiting.close()
        store.engine.dispose()


def test_a_deadlock_inside_an_atomic_blocks_savepoint_is_busy(server) -> None:
    """Two atomic blocks take two owners' terms locks in opposite orders: the engine picks
    a victim inside the savepoint of its second call (MariaDB then ends the whole
    transaction). The victim sees `Busy`, the other block commits, nothing half-applied."""
    ents, _, _ = server
    apps = [Entitlements(ents.store, clock=ManualClock(START)) for _ in range(2)]
    both_hold_one = threading.Barrier(2, timeout=30)
    outcomes: dict[int, str] = {}

    def block(i: int) -> None:
        app, first, second = apps[i], (ACME, GLOBEX)[i], (GLOBEX, ACME)[i]
        try:
            with app.atomic():
                app.subscriptions.change_seats(first, 10 + i, actor="ann")
                both_hold_one.wait()
                try:
                    app.subscriptions.change_seats(second, 20 + i, actor="ann")
                except Busy:
                    outcomes[i] = "busy inside"
                    raise
            outcomes[i] = "committed"
        except Busy as busy:
            outcomes.setdefault(i, "busy" if busy.retryable else "busy, not retryable")
        except Exception as error:
            outcomes[i] = f"{type(error).__module__}.{type(error).__name__}: {error}"

    threads = [threading.Thread(target=block, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes.values()) == ["busy inside", "committed"], outcomes
    winner = next(i for i, o in outcomes.items() if o == "committed")
    seats = {o: ents.subscriptions.get(o).seats for o in (ACME, GLOBEX)}
    first, second = (ACME, GLOBEX)[winner], (GLOBEX, ACME)[winner]
    assert seats == {first: 10 + winner, second: 20 + winner}
    for app in apps:
        app.close()


def test_a_block_that_swallows_a_deadlock_does_not_commit_half_of_it(server) -> None:
    """Catching `Busy` inside the block and carrying on: on MariaDB the transaction is
    already gone, so leaving the block raises `Busy` again instead of committing a part."""
    ents, _, _ = server
    dialect = ents.store.engine.dialect.name
    apps = [Entitlements(ents.store, clock=ManualClock(START)) for _ in range(2)]
    both_hold_one = threading.Barrier(2, timeout=30)
    outcomes: dict[int, str] = {}

    def block(i: int) -> None:
        app, first, second = apps[i], (ACME, GLOBEX)[i], (GLOBEX, ACME)[i]
        try:
            with app.atomic():
                app.subscriptions.change_seats(first, 10 + i, actor="ann")
                both_hold_one.wait()
                try:
                    app.subscriptions.change_seats(second, 20 + i, actor="ann")
                except Busy:
                    outcomes[i] = "swallowed"
            outcomes[i] = outcomes.get(i, "") + " committed"
        except Busy:
            outcomes[i] = outcomes.get(i, "") + " busy at commit"
        except Exception as error:
            outcomes[i] = f"{type(error).__module__}.{type(error).__name__}: {error}"

    threads = [threading.Thread(target=block, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    victim = next(i for i, o in outcomes.items() if o.startswith("swallowed"))
    winner = 1 - victim
    seats = {o: ents.subscriptions.get(o).seats for o in (ACME, GLOBEX)}
    victims_first = (ACME, GLOBEX)[victim]
    if dialect == "mysql":
        assert outcomes[victim] == "swallowed busy at commit", outcomes
        assert outcomes[winner] == " committed", outcomes
        assert seats[victims_first] == 20 + winner, "the victim's first write is not kept"
    else:
        # PostgreSQL rolls back to the savepoint only: the first write stands, as asked,
        # and commits; the winner's change of that record waited for it and, read again
        # under the owner's lock, applies on top of it
        assert outcomes[victim] == "swallowed committed", outcomes
        assert outcomes[winner] == " committed", outcomes
        assert seats[victims_first] == 20 + winner
        kept = [e for e in ents.audit.for_owner(victims_first) if e.action.endswith("seats")]
        assert [e.after["seats"] for e in kept][-2:] == [10 + victim, 20 + winner]
    for app in apps:
        app.close()


# -- one classification -------------------------------------------------------------------


class _Orig(Exception):
    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("orig", "expected", "retryable"),
    [
        (_Orig("deadlock", sqlstate="40P01"), Busy, True),
        (_Orig("serialization", sqlstate="40001"), Busy, True),
        (_Orig("lock timeout", sqlstate="55P03"), Busy, True),
        (_Orig(1205, "Lock wait timeout exceeded"), Busy, True),
        (_Orig(1213, "Deadlock found"), Busy, True),
        (_Orig("terminating connection", sqlstate="57P01"), ConnectionLost, True),
        (_Orig(2013, "Lost connection to server during query"), ConnectionLost, True),
        (_Orig(1305, "SAVEPOINT does not exist"), StorageError, False),
        (_Orig("syntax", sqlstate="42601"), StorageError, False),
    ],
)
def test_driver_errors_are_classified_once_for_every_engine(orig, expected, retryable) -> None:
    error = translate(sa.exc.OperationalError("SELECT 1", {}, orig))
    assert type(error) is expected
    assert error.retryable is retryable


def test_a_broken_commit_is_not_marked_retryable() -> None:
    orig = _Orig("terminating connection", sqlstate="57P01")
    error = translate(sa.exc.OperationalError("COMMIT", {}, orig), committing=True)
    assert isinstance(error, ConnectionLost)
    assert not error.retryable
