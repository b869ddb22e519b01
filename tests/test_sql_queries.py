"""Statement budgets: cold resolution costs a constant number of statements, whatever
else is stored; writes stay within theirs (consume three, a batch the same whatever its
size, plan changes and trials their own), with no savepoint."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

from entitlements import (
    AccessPolicy,
    Entitlements,
    Limit,
    LimitExceeded,
    LimitKind,
    ManualClock,
    Owner,
    Plan,
    SubscriptionExists,
    SubscriptionStatus,
    UsageEvent,
)
from entitlements.adapters.sql import tables

ACME = Owner("organization", "acme")


@contextmanager
def counted(engine):
    """The statements this thread sends: a follower's poll, run by another test's
    ``Entitlements`` left open on the same shared engine, is not the call's cost."""
    statements: list[str] = []
    caller = threading.get_ident()

    def count(conn, cursor, statement, parameters, context, executemany):
        if threading.get_ident() == caller:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def populate(ents: Entitlements, owners: int, overrides_each: int) -> None:
    with ents.atomic():
        for i in range(owners):
            other = Owner("organization", f"o{i}")
            ents.subscriptions.subscribe(other, "team", actor="staff")
            for k in range(overrides_each):
                ents.overrides.set_feature(
                    other, f"f{k}", enabled=True, actor="staff", reason="bulk"
                )


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_cold_resolution_cost_does_not_grow_with_other_owners(kind, make_store):
    store = make_store(kind)
    ents = Entitlements(store, policy=AccessPolicy(fallback_plan="free"))
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff")
    ents.plans.define(Plan("team", "Team", features={"sso": True}, status="active"), actor="staff")
    ents.subscriptions.subscribe(ACME, "team", actor="staff")
    ents.overrides.set_feature(ACME, "beta", enabled=True, actor="staff", reason="pilot")

    def cost() -> int:
        with counted(store.engine) as statements:
            snapshot = ents.resolve(ACME)
        assert snapshot.allows("sso")
        assert snapshot.allows("beta")
        return len(statements)

    small = cost()
    populate(ents, owners=300, overrides_each=3)
    large = cost()
    assert small == large
    assert large <= 5, "subscription, plan version, overrides (+ transaction statements)"
    ents.subscriptions.cancel(ACME, actor="staff")
    with counted(store.engine) as statements:
        assert ents.resolve(ACME).plan_key == "free"
    assert len(statements) <= large + 1, "the fallback plan is one more lookup"


def test_every_lookup_path_has_an_index():
    indexed = {
        table.name: {tuple(c.name for c in index.columns) for index in table.indexes}
        | {tuple(c.name for c in table.primary_key.columns)}
        | {tuple(c.name for c in u.columns) for u in table.constraints if hasattr(u, "columns")}
        for table in tables.metadata.sorted_tables
    }
    lookups = {
        "ent_subscriptions": [
            ("tenant", "owner_kind", "owner_id"),
            ("tenant", "next_change_at"),
            ("id",),
            ("tenant", "plan_key"),
            ("live_owner",),
        ],
        "ent_overrides": [("tenant", "owner_kind", "owner_id"), ("tenant", "expires_at")],
        "ent_audit_events": [("tenant", "owner_kind", "owner_id"), ("target", "pk")],
        "ent_plan_versions": [("plan_key", "version")],
        "ent_plans": [("key",)],
    }
    for table, paths in lookups.items():
        for path in paths:
            assert any(index[: len(path)] == path for index in indexed[table]), (table, path)


# -- write budgets ------------------------------------------------------------------------

METERED = Plan(
    "metered",
    "Metered",
    limits={"api_calls": Limit(10**9, kind=LimitKind.METERED), "projects": Limit(50)},
    status="active",
)
BIGGER = Plan(
    "bigger",
    "Bigger",
    limits={"api_calls": Limit(2 * 10**9, kind=LimitKind.METERED), "projects": Limit(100)},
    status="active",
)
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")


def data_statements(statements: list[str]) -> list[str]:
    """What a write sends besides starting and ending its transaction (SQLite's BEGIN
    IMMEDIATE is sent as a statement; the servers' are not)."""
    assert not [s for s in statements if "SAVEPOINT" in s.upper()], statements
    return [s for s in statements if not s.lstrip().upper().startswith(TRANSACTION_CONTROL)]


def metered(kind, make_store) -> tuple[Any, Entitlements]:
    store = make_store(kind)
    ents = Entitlements(store)
    ents.plans.define(METERED, actor="staff")
    ents.plans.define(BIGGER, actor="staff")
    ents.subscriptions.subscribe(ACME, "metered", actor="staff")
    ents.usage.consume(ACME, "api_calls", 1, key="first")
    return store, ents


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_consume_is_at_most_three_statements_retry_or_not(kind, make_store):
    store, ents = metered(kind, make_store)
    for i in range(3):
        with counted(store.engine) as statements:
            decision = ents.usage.consume(ACME, "api_calls", 2, key=f"req-{i}")
        assert (decision.allowed, decision.duplicate) == (True, False)
        assert len(data_statements(statements)) <= 3, statements
    with counted(store.engine) as statements:
        again = ents.usage.consume(ACME, "api_calls", 2, key="req-2")
    assert (again.duplicate, again.used) == (True, decision.used)
    assert len(data_statements(statements)) <= 3, statements
    with counted(store.engine) as statements:
        ents.usage.consume(ACME, "api_calls", 1)
    assert len(data_statements(statements)) <= 3, statements
    assert ents.usage.total(ACME, "api_calls") == 8


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_consumption_with_stale_terms_is_refused_by_the_database(kind, make_store):
    """Another process lowers the limit; this one's cached terms still say a billion.
    The counter row carries the terms revision, so the conditional UPDATE refuses the
    guess and the call decides again under the lock."""
    store, ents = metered(kind, make_store)
    other = Entitlements(store)
    ents.usage.consume(ACME, "api_calls", 1, key="warm")
    stale = ents.runtime.cache.snapshots[ACME]
    tiny = Plan(
        "tiny",
        "Tiny",
        limits={"api_calls": Limit(5, kind=LimitKind.METERED), "projects": Limit(50)},
        status="active",
    )
    other.plans.define(tiny, actor="staff")
    other.subscriptions.change_plan(ACME, "tiny", actor="staff", if_over_quota="allow")
    cache = ents.runtime.cache
    cache.put(stale, cache.generation)  # as if the change feed had not reached us yet
    assert cache.snapshots[ACME].limit("api_calls") == 10**9
    with pytest.raises(LimitExceeded):
        ents.usage.consume(ACME, "api_calls", 10, key="too-much")
    assert ents.usage.total(ACME, "api_calls") == 2


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_batch_costs_the_same_statements_whatever_its_size(kind, make_store):
    store, ents = metered(kind, make_store)

    def cost(size: int, tag: str) -> int:
        events = [UsageEvent(ACME, "api_calls", 1, key=f"{tag}-{i}") for i in range(size)]
        with counted(store.engine) as statements:
            results = ents.usage.consume_many(events)
        assert all(r.accepted for r in results)
        return len(data_statements(statements))

    small, large = cost(10, "small"), cost(1000, "large")
    assert small == large <= 5, "existing keys, locked counters, ledger rows, counter, feed"
    assert ents.usage.total(ACME, "api_calls") == 1011


ALERTED = Plan(
    "alerted",
    "Alerted",
    limits={
        "plain": Limit(1000, kind=LimitKind.METERED),
        "alerted": Limit(1000, kind=LimitKind.METERED, alerts=(80, 100)),
    },
    status="active",
)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_thresholds_cost_no_statement_until_one_is_crossed(kind, make_store):
    """Below the first mark and between marks, a limit with thresholds sends exactly the
    statements of the same limit without; the count that crosses adds its notification."""
    store = make_store(kind)
    ents = Entitlements(store)
    ents.plans.define(ALERTED, actor="staff")
    ents.subscriptions.subscribe(ACME, "alerted", actor="staff")

    def single(metric: str, amount: int, key: str) -> list[str]:
        with counted(store.engine) as statements:
            assert ents.usage.consume(ACME, metric, amount, key=f"{metric}-{key}").allowed
        return data_statements(statements)

    def batched(metric: str, key: str) -> list[str]:
        events = [UsageEvent(ACME, metric, 1, key=f"{metric}-{key}-{i}") for i in range(10)]
        with counted(store.engine) as statements:
            assert all(r.accepted for r in ents.usage.consume_many(events))
        return data_statements(statements)

    for metric in ("plain", "alerted"):
        single(metric, 1, "warm")
    assert single("alerted", 1, "below") == single("plain", 1, "below")
    assert batched("alerted", "below") == batched("plain", "below")
    for metric in ("plain", "alerted"):
        single(metric, 838, "to-850")  # 850: past the 80% mark (800)
    assert single("alerted", 1, "between") == single("plain", 1, "between")
    assert batched("alerted", "between") == batched("plain", "between")
    crossing = single("alerted", 139, "to-1000")
    assert len(crossing) == len(single("plain", 139, "to-1000")) + 1
    assert [n.facts["threshold"] for n in ents.notifications.list(ACME)] == [100, 80]


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_plan_changes_and_trials_stay_within_their_statement_budgets(kind, make_store):
    store, ents = metered(kind, make_store)
    ents.usage.consume(ACME, "projects", 3)
    # issue 14 asks 6 and 3. A plan change takes the terms lock, reads the subscription
    # with the owner's overrides and both plan versions under it, stamps the counters of
    # its usage period, writes the subscription, its audit row and the feed row (on
    # PostgreSQL the audit and feed rows share one statement); a downgrade also reads
    # usage (one more). A trial reads its plan, takes the lock (a new owner's revision row
    # says it has no counters to stamp), inserts the subscription, then its audit and
    # feed rows. What stands in the way of 3: on
    # PostgreSQL a statement's snapshot predates the lock it waits for, so nothing read
    # or stamped under the lock can share a statement with taking it; SQLite and MariaDB
    # have no writable CTEs to put inserts into several tables in one statement. The
    # subscription's history stretch is written at commit too: on PostgreSQL in the same
    # statement as the audit and feed rows, on SQLite and MariaDB in one more. A plan
    # change also writes its notification for the host (issue 25): one insert more. A new
    # subscription row writes the owner search's postings of its owner and external id
    # (issue 28): one insert more for a trial; a plan change writes none. A new row also
    # appends its owner's change to the console's status counts (issue 28, one
    # INSERT ... SELECT that also takes back the owner's row before it): one more for a
    # trial; a write that keeps the status, as a plan change does, appends none.
    budgets = (
        {"change_plan": 6, "downgrade": 7, "start_trial": 6}
        if kind == "postgres"
        else {"change_plan": 8, "downgrade": 9, "start_trial": 8}
    )
    with counted(store.engine) as statements:
        ents.subscriptions.change_plan(ACME, "bigger", actor="staff")
    assert len(data_statements(statements)) <= budgets["change_plan"], statements
    with counted(store.engine) as statements:
        ents.subscriptions.change_plan(ACME, "metered", actor="staff")
    assert len(data_statements(statements)) <= budgets["downgrade"], statements
    with counted(store.engine) as statements:
        ents.subscriptions.start_trial(Owner("organization", "newcomer"), "metered", actor="staff")
    assert len(data_statements(statements)) <= budgets["start_trial"], statements


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres", "mysql"])
def test_a_trial_starts_without_a_read_and_a_live_subscription_still_refuses_it(kind, make_store):
    """start_trial lets the one-live-subscription index tell whether the owner has one.
    Refused, it leaves the transaction usable (PostgreSQL aborts on a failed statement:
    the insert must not fail, only skip), so an atomic block carries on; an owner whose
    trial ran out before any sweep stored it may start again."""
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    store = make_store(kind)
    ents = Entitlements(store, clock=clock)
    ents.plans.define(METERED, actor="staff")
    newcomer, other = Owner("organization", "newcomer"), Owner("organization", "other")
    ents.subscriptions.start_trial(newcomer, "metered", actor="staff", trial_days=7)
    with ents.atomic():
        with pytest.raises(SubscriptionExists):
            ents.subscriptions.start_trial(newcomer, "metered", actor="staff")
        ents.subscriptions.start_trial(other, "metered", actor="staff")
    assert ents.subscriptions.get(other).status is SubscriptionStatus.TRIALING
    with pytest.raises(SubscriptionExists):
        ents.subscriptions.subscribe(newcomer, "metered", actor="staff")
    clock.advance(days=8)  # the trial ran out; nothing stored that yet
    again = ents.subscriptions.start_trial(newcomer, "metered", actor="staff")
    statuses = [s.status for s in ents.subscriptions.history(newcomer)]
    assert statuses == [SubscriptionStatus.EXPIRED, SubscriptionStatus.TRIALING]
    assert ents.subscriptions.get(newcomer).id == again.id


@pytest.mark.parametrize("start", ["subscribe", "start_trial", "gauge_first"])
@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_new_subscription_makes_consumptions_at_the_old_terms_stale(kind, start, make_store):
    """An owner on the fallback plan consumed (its counters carry that revision); a
    subscription started by another process must refuse this process's cached terms —
    also when the owner's counter was set, not consumed. A start that creates the owner's
    revision row stamps no counters: none may exist."""
    store = make_store(kind)
    policy = AccessPolicy(fallback_plan="free")
    ents, other = Entitlements(store, policy=policy), Entitlements(store, policy=policy)
    free = Plan("free", "Free", limits={"projects": Limit(50)}, status="active")
    tiny = Plan("tiny", "Tiny", limits={"projects": Limit(2)}, status="active")
    ents.plans.define(free, actor="staff")
    ents.plans.define(tiny, actor="staff")
    if start == "gauge_first":
        ents.usage.set_gauge(ACME, "projects", 1)
        assert ents.usage.check(ACME, "projects").used == 1  # the terms now cached
    else:
        ents.usage.consume(ACME, "projects", 1)
    stale = ents.runtime.cache.snapshots[ACME]
    if start == "start_trial":
        other.subscriptions.start_trial(ACME, "tiny", actor="staff")
    else:
        other.subscriptions.subscribe(ACME, "tiny", actor="staff")
    cache = ents.runtime.cache
    cache.put(stale, cache.generation)
    with pytest.raises(LimitExceeded):
        ents.usage.consume(ACME, "projects", 5)
    assert ents.usage.total(ACME, "projects") == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_commit_with_thousands_of_feed_and_audit_rows_fits_the_engine(kind, make_store):
    """Feed and audit rows share one statement where the engine allows; past PostgreSQL's
    65,535 parameters per statement they must not."""
    from entitlements.domain.audit import AuditEvent
    from entitlements.domain.change import ChangeKind

    store = make_store(kind)
    owners = [Owner("organization", f"o{i}") for i in range(14_000)]
    with store.unit_of_work(None) as uow:
        for owner in owners:
            uow.feed.note(owner, ChangeKind.TERMS)
        for n in range(3):
            uow.audit.append(
                AuditEvent(f"a{n}", datetime.now(UTC), "app", "x.y", "t:1", owner=ACME)
            )
        uow.commit()
        revision = uow.committed_revision
    with store.unit_of_work(None, read_only=True) as uow:
        assert len(uow.audit.for_owner(ACME)) == 3
    assert revision is not None
    assert store.feed_head() == revision
    assert {c.owner for c in store.read_changes(0).changes} >= set(owners[:100])
