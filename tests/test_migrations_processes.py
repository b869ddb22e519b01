"""Plan-version migrations across real processes on PostgreSQL and MariaDB: workers
running one migration move each subscription once while others consume and change plans
of the same owners; a worker terminated mid-run leaves nothing half done; workers
scheduling moves at period end schedule each once, and a cancel racing one leaves none.

5,000 subscriptions under the ``ci`` hypothesis profile, 600 under the default one (a
newcomer's run stays short)."""

from __future__ import annotations

import os
import time
from collections import Counter as Tally

import pytest
import sqlalchemy as sa

from conftest import server_url
from entitlements import Entitlements, Limit, LimitKind, Plan
from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql import tables as t
from migration_workers import consume, migrate, migrate_until_killed, owner
from races import SPAWN

SERVERS = ["postgres", "mysql"]
SUBSCRIPTIONS = 5_000 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 600
FINAL = {"moved", "skipped", "failed", "scheduled", "canceled"}


def _catalog(ents: Entitlements, subscribers: int) -> None:
    calls = {"calls": Limit(1_000_000, kind=LimitKind.METERED)}
    ents.plans.define(Plan("pro", "Pro", limits=calls, status="active"), actor="staff")
    ents.plans.define(Plan("team", "Team", limits=calls, status="active"), actor="staff")
    for start in range(0, subscribers, 250):
        with ents.atomic():
            for n in range(start, min(start + 250, subscribers)):
                ents.subscriptions.subscribe(owner(n), "pro", actor="staff")
    more = {"calls": Limit(2_000_000, kind=LimitKind.METERED)}
    ents.plans.revise("pro", actor="staff", limits=more, features={"export": True})


def _items(store: SqlStore, migration_id: str) -> list[tuple[str, str, str | None]]:
    i = t.migration_items.c
    with store.engine.connect() as connection:
        return [
            (row.owner_id, row.status, row.why)
            for row in connection.execute(
                sa.select(i.owner_id, i.status, i.why).where(i.migration_id == migration_id)
            )
        ]


def _migrate_audits(store: SqlStore) -> Tally[str]:
    a = t.audit_events.c
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(a.owner_id).where(a.action == "subscription.migrate")
        ).scalars()
        return Tally(rows)


@pytest.mark.parametrize("kind", SERVERS)
def test_four_migrators_and_four_consumers_each_item_ends_once(make_store, kind):
    make_store(kind)
    url = server_url(kind)
    store = SqlStore.from_url(url)
    ents = Entitlements(store)
    _catalog(ents, SUBSCRIPTIONS)
    migration = ents.migrations.create("pro", actor="staff", reason="v2 for everyone")
    touched = min(400, SUBSCRIPTIONS)

    results = run_processes_mixed(url, migration.id, touched)

    consumed = Tally(n for kind_, n, _ in results if kind_ == "consumed")
    assert not [r for r in results if r[0] == "refused"], results[:5]
    handled = sum(n for kind_, n, _ in results if kind_ == "migrated")
    items = _items(store, migration.id)
    assert len(items) == SUBSCRIPTIONS
    assert handled == SUBSCRIPTIONS, "each item handled by exactly one worker"
    assert {status for _, status, _ in items} <= FINAL
    audits = _migrate_audits(store)
    moved = {o for o, status, _ in items if status == "moved"}
    assert set(audits) == moved
    assert set(audits.values()) == {1}, "no subscription moved twice"
    skipped = {o: why for o, status, why in items if status == "skipped"}
    assert set(skipped.values()) <= {"plan_changed"}
    assert ents.migrations.get(migration.id).migration.status == "completed"
    for n in range(SUBSCRIPTIONS):
        sub = ents.subscriptions.get(owner(n))
        assert (sub.plan_key, sub.plan_version) in {("pro", 2), ("team", 1)}
        if sub.plan_key == "pro":
            assert owner(n).id in moved
        if owner(n).id not in moved:
            assert sub.plan_key == "team"
        if n < touched:
            assert ents.usage.counter(owner(n), "calls").used == consumed[n] == 12
    ents.close()


def run_processes_mixed(url: str, migration_id: str, touched: int) -> list:
    """4 migrators and 4 consumers, all released by one barrier."""
    barrier = SPAWN.Barrier(8)
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=migrate, args=(url, migration_id, barrier, results)) for _ in range(4)
    ] + [SPAWN.Process(target=consume, args=(url, w, touched, barrier, results)) for w in range(4)]
    for p in procs:
        p.start()
    got = []
    deadline = time.monotonic() + 900
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        while not results.empty():
            got.append(results.get(timeout=5))
        time.sleep(0.05)
    for p in procs:
        p.join(timeout=10)
    while not results.empty():
        got.append(results.get(timeout=5))
    assert [p.exitcode for p in procs] == [0] * 8, got[-5:]
    return got


@pytest.mark.parametrize("kind", SERVERS)
def test_a_worker_terminated_mid_run_then_run_again_completes(make_store, kind):
    make_store(kind)
    url = server_url(kind)
    store = SqlStore.from_url(url)
    ents = Entitlements(store)
    count = 300
    _catalog(ents, count)
    migration = ents.migrations.create("pro", actor="staff")
    worker = SPAWN.Process(target=migrate_until_killed, args=(url, migration.id))
    worker.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if ents.migrations.get(migration.id).counts["moved"] >= 20:
            break
        time.sleep(0.02)
    worker.terminate()
    worker.join(timeout=30)
    assert worker.exitcode is not None
    assert worker.exitcode != 0
    interrupted = ents.migrations.get(migration.id)
    assert 20 <= interrupted.counts["moved"] < count
    while not ents.migrations.run(migration.id, batch=100).done:
        pass
    items = _items(store, migration.id)
    assert Tally(status for _, status, _ in items) == {"moved": count}
    audits = _migrate_audits(store)
    assert len(audits) == count
    assert set(audits.values()) == {1}
    ents.close()


@pytest.mark.parametrize("kind", SERVERS)
def test_three_migrators_schedule_each_move_once(make_store, kind):
    """A period_end migration run by three processes at once: every item ends scheduled
    once, every subscription holds exactly the one pending move, audited once."""
    make_store(kind)
    url = server_url(kind)
    store = SqlStore.from_url(url)
    ents = Entitlements(store)
    count = 150
    _catalog(ents, count)
    migration = ents.migrations.create("pro", actor="staff", at="period_end")
    barrier = SPAWN.Barrier(3)
    results = SPAWN.Queue()
    procs = [
        SPAWN.Process(target=migrate, args=(url, migration.id, barrier, results)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    handled = sum(results.get(timeout=5)[1] for _ in procs)
    assert handled == count, "each item handled by exactly one worker"
    assert Tally(status for _, status, _ in _items(store, migration.id)) == {"scheduled": count}
    a = t.audit_events.c
    with store.engine.connect() as connection:
        audits = Tally(
            connection.execute(
                sa.select(a.owner_id).where(a.action == "subscription.schedule_change")
            ).scalars()
        )
    assert len(audits) == count
    assert set(audits.values()) == {1}
    for n in range(count):
        pending = ents.subscriptions.pending_change(owner(n))
        assert pending is not None
        assert (pending.plan_key, pending.plan_version) == ("pro", 2)
        assert ents.subscriptions.get(owner(n)).plan_version == 1
    ents.close()


@pytest.mark.parametrize("kind", SERVERS)
def test_a_cancel_racing_a_scheduling_worker_leaves_no_move_behind(make_store, kind):
    """Canceled while another process is scheduling moves: every item ends canceled and
    no subscription keeps a move of the canceled migration."""
    make_store(kind)
    url = server_url(kind)
    store = SqlStore.from_url(url)
    ents = Entitlements(store)
    count = 200
    _catalog(ents, count)
    migration = ents.migrations.create("pro", actor="staff", at="period_end")
    worker = SPAWN.Process(target=migrate_until_killed, args=(url, migration.id))
    worker.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if ents.migrations.get(migration.id).counts["scheduled"] >= 20:
            break
        time.sleep(0.02)
    ents.migrations.cancel(migration.id, actor="staff")
    worker.join(timeout=300)
    assert worker.exitcode == 0
    assert Tally(status for _, status, _ in _items(store, migration.id)) == {"canceled": count}
    assert all(ents.subscriptions.pending_change(owner(n)) is None for n in range(count))
    ents.close()
