"""Faults in the middle of a use case: the connection killed at each of its statements
(PostgreSQL's ``pg_terminate_backend`` from another connection), and statement and lock
timeouts (PostgreSQL and MariaDB). Storage stays consistent — a subscription always has
its audit event, usage always its ledger record — only library errors reach the caller,
and the next call works."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from entitlements import (
    Entitlements,
    EntitlementsError,
    Limit,
    LimitKind,
    Owner,
    Plan,
)
from entitlements.adapters.sql import SqlStore

PLAN = Plan(
    "metered", "Metered", limits={"calls": Limit(100, kind=LimitKind.METERED)}, status="active"
)


class Killer:
    """Counts the statements run on ``engine``; when armed, terminates the backend of the
    connection about to run statement number ``at`` and waits until it is gone."""

    def __init__(self, engine: sa.Engine, admin: sa.Engine) -> None:
        self.admin = admin
        self.count = 0
        self.at: int | None = None
        self.killed = False
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # the change feed follower's reads
        self.count += 1
        if self.at is None or self.count != self.at:
            return
        pid = conn.connection.dbapi_connection.info.backend_pid
        with self.admin.connect() as admin:
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(200):
                alive = admin.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar_one()
                if not alive:
                    break
                time.sleep(0.01)
        self.killed = True

    @contextmanager
    def arm(self, at: int | None) -> Iterator[None]:
        self.count, self.at, self.killed = 0, at, False
        try:
            yield
        finally:
            self.at = None


@pytest.fixture
def postgres(make_store):
    base = make_store("postgres")
    url = base.engine.url.render_as_string(hide_password=False)
    store = SqlStore.from_url(url, pool_pre_ping=True)
    admin = sa.create_engine(url)
    ents = Entitlements(store, max_staleness=0)
    ents.plans.define(PLAN, actor="staff")
    yield ents, Killer(store.engine, admin)
    ents.close()
    store.engine.dispose()
    admin.dispose()


def _subscribed_with_audit(ents: Entitlements, owner: Owner) -> bool:
    """True if subscribed (with its audit event), False if neither; fails on half."""
    subscription = ents.subscriptions.find(owner)
    events = [e.action for e in ents.audit.for_owner(owner)]
    if subscription is None:
        assert events == []
        return False
    assert events == ["subscription.subscribe"]
    return True


def _usage_matches_ledger(ents: Entitlements, owner: Owner) -> int:
    counter = ents.usage.counter(owner, "calls")
    records = ents.usage.records(owner, "calls")
    assert counter.used == sum(r.amount for r in records)
    return counter.used


def _statements(killer: Killer, call: Callable[[], object]) -> int:
    with killer.arm(None):
        call()
        return killer.count


def _each_statement(killer: Killer, total: int, call: Callable[[int], object]) -> list[str]:
    outcomes = []
    for n in range(1, total + 1):
        with killer.arm(n):
            try:
                call(n)
                outcomes.append("ok")
            except EntitlementsError as error:
                outcomes.append(type(error).__name__)
        assert killer.killed
    return outcomes


def test_subscribe_killed_at_each_statement_leaves_a_subscription_with_its_audit_or_nothing(
    postgres,
):
    ents, killer = postgres
    total = _statements(
        killer,
        lambda: ents.subscriptions.subscribe(Owner("org", "probe"), "metered", actor="staff"),
    )
    assert total >= 4  # plan, terms lock, subscription, audit and feed rows in one

    def subscribe(n: int) -> object:  # ids as long as the probe's: both have search trigrams
        return ents.subscriptions.subscribe(Owner("org", f"owner-{n}"), "metered", actor="staff")

    outcomes = _each_statement(killer, total, subscribe)
    assert "ok" not in outcomes  # every statement counts: killing any one loses the call
    for n in range(1, total + 1):
        owner = Owner("org", f"owner-{n}")
        assert not _subscribed_with_audit(ents, owner)
        ents.subscriptions.subscribe(owner, "metered", actor="staff")  # the next call works
        assert _subscribed_with_audit(ents, owner)


def test_consume_killed_at_each_statement_never_counts_without_its_ledger_record(postgres):
    ents, killer = postgres
    owner = Owner("org", "acme")
    ents.subscriptions.subscribe(owner, "metered", actor="staff")
    ents.usage.consume(owner, "calls", 1, key="warm")
    total = _statements(killer, lambda: ents.usage.consume(owner, "calls", 1, key="probe"))
    assert total >= 1
    outcomes = _each_statement(
        killer, total, lambda n: ents.usage.consume(owner, "calls", 1, key=f"k{n}")
    )
    assert set(outcomes) <= {"StorageError", "ConnectionLost", "Busy"}
    assert _usage_matches_ledger(ents, owner) == 2
    for n in range(1, total + 1):  # a retry with the same key now counts, once
        assert not ents.usage.consume(owner, "calls", 1, key=f"k{n}").duplicate
        assert ents.usage.consume(owner, "calls", 1, key=f"k{n}").duplicate
    assert _usage_matches_ledger(ents, owner) == 2 + total


def test_reads_killed_mid_way_raise_library_errors_and_the_next_read_works(postgres):
    ents, killer = postgres
    owner = Owner("org", "acme")
    ents.subscriptions.subscribe(owner, "metered", actor="staff")
    total = _statements(killer, lambda: ents.audit.for_owner(owner))
    outcomes = _each_statement(killer, total, lambda n: ents.audit.for_owner(owner))
    assert set(outcomes) <= {"StorageError", "ConnectionLost", "Busy", "ok"}
    assert [e.action for e in ents.audit.for_owner(owner)] == ["subscription.subscribe"]


# -- timeouts ------------------------------------------------------------------------------

TIMEOUTS = {
    ("postgres", "lock"): {"options": "-c lock_timeout=300"},
    ("postgres", "statement"): {"options": "-c statement_timeout=300"},
    ("mysql", "lock"): {"init_command": "SET SESSION innodb_lock_wait_timeout=1"},
    ("mysql", "statement"): {"init_command": "SET SESSION max_statement_time=0.3"},
}


@pytest.mark.parametrize(("kind", "timeout"), list(TIMEOUTS))
def test_a_timeout_behind_a_held_lock_is_a_library_error_and_changes_nothing(
    make_store, kind, timeout
):
    base = make_store(kind)
    url = base.engine.url.render_as_string(hide_password=False)
    setup = Entitlements(base)
    setup.plans.define(PLAN, actor="staff")
    owner = Owner("org", "acme")
    setup.subscriptions.subscribe(owner, "metered", actor="staff", seats=1)
    setup.usage.consume(owner, "calls", 1)
    store = SqlStore.from_url(url, connect_args=TIMEOUTS[(kind, timeout)])
    ents = Entitlements(store, max_staleness=0)
    before = base.dump()
    try:
        with base.engine.connect() as holder:
            holder.execute(  # another writer holds the owner's terms lock
                sa.text(
                    "SELECT revision FROM ent_owner_revisions "
                    "WHERE owner_kind = 'org' AND owner_id = 'acme' FOR UPDATE"
                )
            )
            with pytest.raises(EntitlementsError):
                ents.subscriptions.change_seats(owner, 5, actor="staff")
            with pytest.raises(EntitlementsError):
                ents.overrides.set_limit(owner, "calls", 7, actor="staff", reason="r")
            holder.rollback()
        assert base.dump() == before
        assert ents.subscriptions.change_seats(owner, 5, actor="staff").subscription.seats == 5
        assert _usage_matches_ledger(ents, owner) == 1
    finally:
        ents.close()
        setup.close()
        store.engine.dispose()
