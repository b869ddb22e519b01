"""A run handles its items in groups, one unit of work each, reading for the whole group
at once: the reads a run sends grow with its groups, not its items; an item whose checks
fail is reported with why while the rest of its group moves; a group whose writes fail
is done again item by item, and every item still ends in one state, moved once."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from conftest import STORE_KINDS
from entitlements import Entitlements, Limit, LimitKind, ManualClock, Owner, Plan
from entitlements.service.migrations import GROUP

START = datetime(2026, 3, 1, tzinfo=UTC)
SQL_KINDS = ["sqlite", "postgres", "mysql"]


def app(store) -> Entitlements:
    return Entitlements(store, clock=ManualClock(START), max_staleness=0)


def subscribers(ents: Entitlements, n: int, prefix: str = "o") -> list[Owner]:
    """``n`` subscribers of ``pro`` v1, then ``pro`` revised to v2 (more projects)."""
    if ents.plans.list() == []:
        ents.plans.define(
            Plan("pro", "Pro", limits={"projects": Limit(10, kind=LimitKind.GAUGE)}),
            actor="staff",
        )
        ents.plans.activate("pro", actor="staff")
    who = [Owner("organization", f"{prefix}{i:03}") for i in range(n)]
    with ents.atomic():
        for owner in who:
            ents.subscriptions.subscribe(owner, "pro", actor="staff")
    return who


def revise(ents: Entitlements) -> None:
    ents.plans.revise("pro", actor="staff", limits={"projects": Limit(20, kind=LimitKind.GAUGE)})


@contextmanager
def counted(engine):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def outcomes(ents: Entitlements, migration_id: str) -> dict[str, tuple[str, str | None]]:
    return {
        item.owner.id: (item.status.value, None if item.why is None else item.why.value)
        for item in ents.migrations.items(migration_id, limit=10_000)
    }


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_the_reads_of_a_run_grow_with_its_groups_not_its_items(kind, make_store):
    store = make_store(kind)
    ents = app(store)
    one = subscribers(ents, GROUP, "a")
    three = subscribers(ents, 3 * GROUP, "b")
    revise(ents)

    def reads(chosen: list[Owner]) -> tuple[int, list[str]]:
        migration = ents.migrations.create("pro", owners=chosen, actor="staff")
        with counted(store.engine) as statements:
            progress = ents.migrations.run(migration.id, batch=10_000)
        assert progress.done
        assert progress.counts["moved"] == len(chosen)
        return statements.count("SELECT"), statements

    one_group, _ = reads(one)
    three_groups, statements = reads(three)
    # two more groups of GROUP items each: a handful more reads, not one or more per item
    assert three_groups - one_group <= 2 * 6 < 2 * GROUP
    assert "SAVEPOINT" not in statements
    ents.close()


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_poisoned_item_is_reported_and_the_rest_of_its_group_moves(kind, make_store):
    ents = app(make_store(kind))
    who = subscribers(ents, GROUP - 3)
    user = Owner("user", "u1")  # the plan will stop taking users: its move fails
    ents.subscriptions.subscribe(user, "pro", actor="staff")
    ended = who[4]
    revise(ents)
    migration = ents.migrations.create("pro", actor="staff")
    ents.plans.set_owner_kinds("pro", frozenset({"organization"}), actor="staff")
    ents.subscriptions.cancel(ended, actor="staff", at_period_end=False)
    progress = ents.migrations.run(migration.id)
    assert progress.done
    assert progress.counts["moved"] == len(who) - 1
    found = outcomes(ents, migration.id)
    assert found[ended.id] == ("skipped", "ended")
    assert found["u1"] == ("failed", None)
    [failed] = ents.migrations.items(migration.id, status="failed")
    assert failed.error.startswith("PlanNotAssignable")
    assert ents.subscriptions.get(user).plan_version == 1
    for owner in who:
        if owner != ended:
            assert ents.subscriptions.get(owner).plan_version == 2
            assert _migrate_events(ents, owner) == 1
    assert _migrate_events(ents, user) == 0
    ents.close()


def _migrate_events(ents: Entitlements, owner: Owner) -> int:
    return sum(e.action == "subscription.migrate" for e in ents.audit.for_owner(owner))


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_group_whose_write_fails_is_done_again_item_by_item(kind, make_store):
    store = make_store(kind)
    ents = app(store)
    who = subscribers(ents, GROUP)
    revise(ents)
    migration = ents.migrations.create("pro", actor="staff")
    poisoned = ents.subscriptions.get(who[7]).id
    failures = []

    def fail_once(conn, cursor, statement, parameters, context, executemany):
        if (
            not failures
            and statement.lstrip().upper().startswith("UPDATE ENT_SUBSCRIPTIONS")
            and poisoned in str(parameters)
        ):
            failures.append(statement)
            raise sa.exc.OperationalError(statement, parameters, Exception("injected"))

    event.listen(store.engine, "before_cursor_execute", fail_once)
    try:
        progress = ents.migrations.run(migration.id)
    finally:
        event.remove(store.engine, "before_cursor_execute", fail_once)
    assert failures, "the group's write failed once"
    assert progress.done
    assert progress.counts["moved"] == GROUP
    for owner in who:
        assert ents.subscriptions.get(owner).plan_version == 2
        assert _migrate_events(ents, owner) == 1
    ents.close()


@contextmanager
def written(engine):
    """The UPDATE statements sent, as (text, rows)."""
    statements: list[tuple[str, int]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE"):
            statements.append((" ".join(statement.split()), len(parameters) if executemany else 1))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", keep)


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_group_writes_only_the_columns_its_moves_change_and_its_outcomes_at_once(
    kind, make_store
):
    store = make_store(kind)
    ents = app(store)
    who = subscribers(ents, GROUP)
    revise(ents)
    before = {owner: ents.subscriptions.get(owner) for owner in who}
    migration = ents.migrations.create("pro", actor="staff")
    with written(store.engine) as updates:
        assert ents.migrations.run(migration.id, batch=GROUP).counts["moved"] == GROUP
    moves = [(text, rows) for text, rows in updates if "ent_subscriptions " in text]
    assert len(moves) == 1
    assigned = moves[0][0].split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    columns = {part.split("=")[0].strip() for part in assigned.split(",")}
    # updated_at too when the clock has moved since they were written
    assert {"plan_version", "revision"} <= columns <= {"plan_version", "revision", "updated_at"}
    settled = [text for text, _ in updates if "ent_migration_items " in text]
    assert len(settled) == 1  # every item of the group moved: one statement for all
    for owner in who:
        after = ents.subscriptions.get(owner)
        assert after.plan_version == 2
        assert after.revision == before[owner].revision + 1
        same = {"plan_version": 1, "revision": before[owner].revision}
        assert attrs.evolve(after, updated_at=before[owner].updated_at, **same) == before[owner]
    ents.close()


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_group_of_mixed_outcomes_settles_each_item_to_its_own(kind, make_store):
    store = make_store(kind)
    ents = app(store)
    who = subscribers(ents, 6)
    revise(ents)
    migration = ents.migrations.create("pro", actor="staff")
    ents.subscriptions.cancel(who[1], actor="staff")
    ents.subscriptions.cancel(who[4], actor="staff")
    with written(store.engine) as updates:
        ents.migrations.run(migration.id, batch=GROUP)
    assert len([text for text, _ in updates if "ent_migration_items " in text]) == 2
    ended = outcomes(ents, migration.id)
    assert ended == {
        owner.id: ("skipped", "ended") if n in (1, 4) else ("moved", None)
        for n, owner in enumerate(who)
    }
    ents.close()


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_group_of_owners_of_several_kinds_reads_each_kind_and_moves_all(kind, make_store):
    store = make_store(kind)
    ents = app(store)
    who = subscribers(ents, 4)
    workspaces = [Owner("workspace", f"w{i}") for i in range(3)]
    with ents.atomic():
        for owner in workspaces:
            ents.subscriptions.subscribe(owner, "pro", actor="staff")
    revise(ents)
    migration = ents.migrations.create("pro", actor="staff")
    assert ents.migrations.run(migration.id, batch=GROUP).counts["moved"] == 7
    for owner in [*who, *workspaces]:
        assert ents.subscriptions.get(owner).plan_version == 2
    ents.close()


def test_the_group_reads_seek_each_owner_on_sqlite(make_store):
    """SQLite seeks no index with a list of (kind, id) pairs: a group's reads would read
    every subscription of the tenant, a cost that grows with the tenant, not the group."""
    store = make_store("sqlite")
    ents = app(store)
    subscribers(ents, 3)
    revise(ents)
    migration = ents.migrations.create("pro", actor="staff")
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        text = " ".join(statement.split())
        if text.startswith("SELECT") and ("owner_id) IN" in text or "owner_id IN" in text):
            found = conn.connection.driver_connection.execute(
                "EXPLAIN QUERY PLAN " + statement, parameters
            ).fetchall()
            plans.append(" ".join(row[3] for row in found))

    event.listen(store.engine, "before_cursor_execute", explain)
    try:
        ents.migrations.run(migration.id, batch=GROUP)
    finally:
        event.remove(store.engine, "before_cursor_execute", explain)
    assert plans
    for plan in plans:
        assert "owner_kind=? AND owner_id=?" in plan, plan
    ents.close()
