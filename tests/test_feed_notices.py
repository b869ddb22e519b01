"""PostgreSQL wake-ups never sit inside a write: no transaction that writes the change
feed (a consumption, a plan change) sends NOTIFY, so no writer waits on PostgreSQL's
notification lock while it holds a row lock; the notice follows the commit, on a
transaction of its own, and a burst of commits sends one per interval.

Statements are counted per transaction through SQLAlchemy's engine events; the notices
are received by a real ``LISTEN`` connection. Throughput with many writers is measured
in ``benchmarks/busy_owner.py`` (this machine's timings make no test).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from entitlements import Entitlements, Limit, LimitKind, Owner, Plan
from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql.hints import CHANNEL, CommitNotices

PLAN = Plan(
    "metered",
    "Metered",
    limits={"api_calls": Limit(10**9, kind=LimitKind.METERED)},
    status="active",
)
ACME = Owner("organization", "acme")


class Transactions:
    """The statements of every committed transaction on an engine's connections."""

    def __init__(self, engine: sa.Engine) -> None:
        self.open: dict[int, list[str]] = defaultdict(list)
        self.committed: list[list[str]] = []
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", self._commit)
        sa.event.listen(engine, "rollback", self._rollback)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.open[id(conn.connection.dbapi_connection)].append(statement)

    def _commit(self, conn: Any) -> None:
        self.committed.append(self.open.pop(id(conn.connection.dbapi_connection), []))

    def _rollback(self, conn: Any) -> None:
        self.open.pop(id(conn.connection.dbapi_connection), None)

    def writing_the_feed(self) -> list[list[str]]:
        return [tx for tx in self.committed if any("INSERT INTO ent_changes" in s for s in tx)]

    def notifying(self) -> list[list[str]]:
        """Transactions that called NOTIFY or pg_notify through SQLAlchemy."""
        return [tx for tx in self.committed if any("NOTIFY" in s.upper() for s in tx)]


def listen(store: SqlStore) -> Any:
    url = store.engine.url.set(drivername="postgresql")
    connection = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    connection.execute(f"LISTEN {CHANNEL}")
    return connection


def received(connection: Any, timeout: float = 10.0) -> int:
    count = 0
    for _ in connection.notifies(timeout=timeout, stop_after=1):
        count += 1
    for _ in connection.notifies(timeout=0.2):
        count += 1
    return count


def test_no_trigger_notifies_inside_a_transaction_that_writes_the_feed(make_store):
    store = make_store("postgres")
    with store.engine.connect() as connection:
        triggers = connection.execute(
            sa.text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ent_changes'::regclass "
                "AND NOT tgisinternal"
            )
        ).all()
    assert triggers == []


def test_a_consumption_commits_before_the_notice_is_sent(make_store):
    store = make_store("postgres")
    ents = Entitlements(store)
    ents.plans.define(PLAN, actor="staff:ann")
    ents.subscriptions.subscribe(ACME, "metered", actor="staff:ann")
    listener = listen(store)
    try:
        seen = Transactions(store.engine)
        for n in range(20):
            ents.usage.consume(ACME, "api_calls", 1, key=f"call-{n}")
        assert received(listener) >= 1
        time.sleep(2 * CommitNotices.interval)
    finally:
        listener.close()
        ents.close()
    writes = seen.writing_the_feed()
    assert len(writes) == 20
    assert not seen.notifying()  # the notices go on the driver's connection, after commit
    assert store.notices is not None
    assert store.notices.sent >= 1


def test_a_burst_of_commits_sends_one_notice_per_interval(make_store):
    shared = make_store("postgres")
    store = SqlStore.from_url(shared.engine.url.render_as_string(hide_password=False))
    assert store.notices is not None
    store.notices.interval = 3600.0  # this store's own notices: one, then none for an hour
    listener = listen(store)
    ents = Entitlements(store)
    try:
        ents.plans.define(PLAN, actor="staff:ann")
        ents.subscriptions.subscribe(ACME, "metered", actor="staff:ann")
        for n in range(50):
            ents.usage.consume(ACME, "api_calls", 1, key=f"burst-{n}")
        assert received(listener) == 1
        assert store.notices.sent == 1
    finally:
        listener.close()
        ents.close()
        store.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "mysql"])
def test_other_engines_send_no_notices(kind, make_store):
    store = make_store(kind)
    assert store.notices is None
