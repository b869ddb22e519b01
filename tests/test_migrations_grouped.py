"""A run handles its items in groups, one unit of work each, reading for the whole group
at once: the reads a run sends grow with its groups, not its items; an item whose checks
fail is reported with why while the rest of its group moves; a group whose writes fail
is done again item by item, and every item still ends in one state, moved once."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime

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
