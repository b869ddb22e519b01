"""Plan-version migrations on every store: a draft moves nothing, a preview writes
nothing, a run moves each subscription once, and each item outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from conftest import STORE_KINDS
from entitlements import Entitlements, Limit, LimitKind, ManualClock, Owner, Plan
from entitlements.domain.migration import (
    MigrationStatus,
    PriceLock,
    price_version_at,
)
from entitlements.domain.plan import Price
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import InvalidInput, MigrationNotFound, SubscriptionNotFound, UnknownPlan

START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(params=STORE_KINDS)
def store(request, make_store):
    return make_store(request.param)


@pytest.fixture
def ents(store):
    app = Entitlements(store, clock=ManualClock(START), max_staleness=0)
    yield app
    app.close()


def projects(n: int) -> dict[str, Limit]:
    return {"projects": Limit(n, kind=LimitKind.GAUGE)}


def pro_v1_v2(ents: Entitlements) -> None:
    """pro v1: 10 projects at 10 EUR; v2: 5 projects, an export feature, at 12 EUR."""
    ents.plans.define(
        Plan("pro", "Pro", limits=projects(10), price=Price("10", "EUR"), status="active"),
        actor="staff",
    )


def revise_to_v2(ents: Entitlements) -> None:
    ents.plans.revise(
        "pro",
        actor="staff",
        limits=projects(5),
        features={"export": True},
        price=Price("12", "EUR"),
    )


def owners(n: int, prefix: str = "o") -> list[Owner]:
    return [Owner("organization", f"{prefix}{i}") for i in range(n)]


def subscribe_all(ents: Entitlements, who: list[Owner]) -> None:
    for owner in who:
        ents.subscriptions.subscribe(owner, "pro", actor="staff")


def version_of(ents: Entitlements, owner: Owner) -> int:
    return ents.subscriptions.get(owner).plan_version


def finished(ents: Entitlements, migration_id: str, batch: int = 500):
    progress = ents.migrations.run(migration_id, batch=batch)
    assert progress.done
    return progress


def outcomes(ents: Entitlements, migration_id: str) -> dict[str, tuple[str, str | None]]:
    return {
        item.owner.id: (item.status.value, None if item.why is None else item.why.value)
        for item in ents.migrations.items(migration_id, limit=1000)
    }


def test_a_draft_moves_nothing_and_revising_a_plan_moves_nobody(ents):
    pro_v1_v2(ents)
    subscribe_all(ents, owners(3))
    revise_to_v2(ents)
    assert {version_of(ents, o) for o in owners(3)} == {1}
    migration = ents.migrations.create("pro", actor="staff", reason="v2 rollout")
    assert migration.status is MigrationStatus.DRAFT
    assert (migration.to_version, migration.from_versions) == (2, None)
    assert {version_of(ents, o) for o in owners(3)} == {1}
    progress = ents.migrations.get(migration.id)
    assert progress.counts["pending"] == 3
    assert progress.total == 3
    assert [m.migration.id for m in ents.migrations.list()] == [migration.id]
    actions = [e.action for e in ents.audit.for_target(migration.target)]
    assert actions == ["migration.create"]


def test_preview_writes_nothing_and_says_what_a_run_would_do(ents, store):
    pro_v1_v2(ents)
    subscribe_all(ents, owners(3))
    ents.usage.consume(Owner("organization", "o2"), "projects", 8)
    revise_to_v2(ents)
    migration = ents.migrations.create("pro", actor="staff")
    before = store.dump()
    preview = ents.migrations.preview(migration.id)
    assert store.dump() == before
    assert dict(preview.totals) == {"moved": 2, "skipped:over_quota": 1}
    first = preview.items[0]
    assert first.current_version == 1
    assert not first.no_diff
    assert [f.key for f in first.change.features_gained] == ["export"]
    assert [(c.name, c.before, c.after) for c in first.change.limits_lowered] == [
        ("projects", 10, 5)
    ]
    over = preview.items[2]
    assert [(o.metric, o.limit, o.used) for o in over.change.over_quota] == [("projects", 5, 8)]
    # and the run does what the preview said
    finished(ents, migration.id)
    assert ents.migrations.get(migration.id).counts["moved"] == 2
    assert outcomes(ents, migration.id)["o2"] == ("skipped", "over_quota")


def test_run_moves_each_once_and_run_again_moves_nothing(ents):
    pro_v1_v2(ents)
    subscribe_all(ents, owners(5))
    revise_to_v2(ents)
    migration = ents.migrations.create("pro", actor="staff")
    first = ents.migrations.run(migration.id, batch=2)
    assert (first.handled, first.pending, first.migration.status) == (2, 3, "running")
    done = finished(ents, migration.id)
    assert done.handled == 3
    assert done.counts["moved"] == 5
    assert done.migration.status is MigrationStatus.COMPLETED
    again = ents.migrations.run(migration.id)
    assert again.handled == 0
    assert again.counts["moved"] == 5
    for owner in owners(5):
        assert version_of(ents, owner) == 2
        moves = [e for e in ents.audit.for_owner(owner) if e.action == "subscription.migrate"]
        assert len(moves) == 1
        assert migration.id in moves[0].reason
    actions = [e.action for e in ents.audit.for_target(migration.target)]
    assert actions == ["migration.create", "migration.start", "migration.complete"]


def test_a_version_with_the_same_terms_is_skipped_as_no_diff(ents):
    pro_v1_v2(ents)
    subscribe_all(ents, owners(1))
    revise_to_v2(ents)
    ents.plans.revise(
        "pro", actor="staff", limits=projects(10), features={}, price=Price("10", "EUR")
    )
    migration = ents.migrations.create("pro", actor="staff", from_versions=[1])
    assert migration.to_version == 3
    assert ents.migrations.preview(migration.id).items[0].no_diff
    finished(ents, migration.id)
    assert outcomes(ents, migration.id) == {"o0": ("skipped", "no_diff")}
    assert version_of(ents, owners(1)[0]) == 1


def test_over_quota_is_skipped_under_refuse_and_moved_under_allow(ents):
    pro_v1_v2(ents)
    heavy = Owner("organization", "heavy")
    subscribe_all(ents, [heavy])
    ents.usage.consume(heavy, "projects", 8)
    revise_to_v2(ents)
    refused = ents.migrations.create("pro", actor="staff")
    finished(ents, refused.id)
    assert outcomes(ents, refused.id) == {"heavy": ("skipped", "over_quota")}
    assert version_of(ents, heavy) == 1
    allowed = ents.migrations.create("pro", actor="staff", if_over_quota="allow")
    finished(ents, allowed.id)
    assert outcomes(ents, allowed.id) == {"heavy": ("moved", None)}
    assert version_of(ents, heavy) == 2
    reported = [e for e in ents.audit.for_owner(heavy) if e.action == "subscription.over_quota"]
    assert len(reported) == 1


def test_owners_changed_meanwhile_are_moved_from_their_new_state_or_skipped(ents):
    pro_v1_v2(ents)
    ents.plans.define(Plan("team", "Team", status="active"), actor="staff")
    who = owners(6)
    subscribe_all(ents, who[:5])
    ents.subscriptions.begin_checkout(who[5], "pro", actor="staff")
    revise_to_v2(ents)
    migration = ents.migrations.create("pro", actor="staff")
    ents.subscriptions.cancel(who[0], actor="staff")
    ents.subscriptions.change_plan(who[1], "team", actor="staff")
    ents.subscriptions.migrate(who[2], actor="staff")
    ents.subscriptions.change_seats(who[3], 7, actor="staff")
    finished(ents, migration.id)
    assert outcomes(ents, migration.id) == {
        "o0": ("skipped", "ended"),
        "o1": ("skipped", "plan_changed"),
        "o2": ("skipped", "already_on_target"),
        "o3": ("moved", None),
        "o4": ("moved", None),
        "o5": ("skipped", "pending_change"),
    }
    moved = ents.subscriptions.get(who[3])
    assert (moved.plan_version, moved.seats) == (2, 7)


def test_an_item_that_cannot_be_moved_fails_with_the_error_and_the_rest_go_on(ents):
    pro_v1_v2(ents)
    subscribe_all(ents, owners(2))
    revise_to_v2(ents)
    migration = ents.migrations.create("pro", actor="staff")
    ents.plans.retire("pro", actor="staff")
    progress = finished(ents, migration.id)
    assert progress.counts["failed"] == 2
    item = ents.migrations.items(migration.id, status="failed")[0]
    assert item.error.startswith("PlanNotAssignable")
    assert version_of(ents, owners(1)[0]) == 1


def test_cancel_keeps_moved_items_and_cancels_pending_ones(ents):
    pro_v1_v2(ents)
    subscribe_all(ents, owners(4))
    revise_to_v2(ents)
    migration = ents.migrations.create("pro", actor="staff")
    ents.migrations.run(migration.id, batch=1)
    canceled = ents.migrations.cancel(migration.id, actor="staff", reason="wrong version")
    assert canceled.migration.status is MigrationStatus.CANCELED
    assert (canceled.counts["moved"], canceled.counts["canceled"]) == (1, 3)
    assert ents.migrations.run(migration.id).handled == 0
    assert [version_of(ents, o) for o in owners(4)] == [2, 1, 1, 1]
    with pytest.raises(InvalidInput):
        ents.migrations.cancel(migration.id, actor="staff")


def test_owners_and_versions_choose_the_subscriptions(ents):
    pro_v1_v2(ents)
    subscribe_all(ents, owners(2))
    revise_to_v2(ents)
    subscribe_all(ents, owners(2, "late"))  # on v2
    ents.plans.revise("pro", actor="staff", limits=projects(20))
    by_version = ents.migrations.create("pro", actor="staff", from_versions=[2])
    assert [i.owner.id for i in ents.migrations.items(by_version.id)] == ["late0", "late1"]
    by_owner = ents.migrations.create("pro", actor="staff", owners=[Owner("organization", "o1")])
    assert [i.owner.id for i in ents.migrations.items(by_owner.id)] == ["o1"]
    every = ents.migrations.create("pro", actor="staff")
    assert ents.migrations.get(every.id).total == 4


def test_bad_input_is_refused_and_nothing_is_stored(ents, store):
    pro_v1_v2(ents)
    subscribe_all(ents, owners(1))
    revise_to_v2(ents)
    before = store.dump()
    bad = [
        {"at": START - timedelta(days=3)},
        {"at": START},
        {"at": datetime(2026, 4, 1)},
        {"at": "tomorrow"},
        {"from_versions": [2]},
        {"from_versions": "1"},
        {"to_version": "2"},
        {"if_over_quota": "maybe"},
        {"owners": [Owner("organization", "nobody")]},
        {"price_lock_until": datetime(2026, 4, 1)},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidInput):
            ents.migrations.create("pro", actor="staff", **kwargs)
    with pytest.raises(UnknownPlan):
        ents.migrations.create("pro", actor="staff", to_version=9)
    with pytest.raises(UnknownPlan):
        ents.migrations.create("nope", actor="staff")
    with pytest.raises(MigrationNotFound):
        ents.migrations.run("0" * 32)
    with pytest.raises(InvalidInput):
        ents.migrations.run("x", batch=0)
    assert store.dump() == before


def test_the_old_price_holds_until_the_lock_ends(ents):
    pro_v1_v2(ents)
    owner = Owner("organization", "locked")
    subscribe_all(ents, [owner])
    revise_to_v2(ents)
    until = START + timedelta(days=40)
    migration = ents.migrations.create("pro", actor="staff", price_lock_until=until)
    finished(ents, migration.id)
    assert version_of(ents, owner) == 2
    assert ents.migrations.price_version(owner) == 1
    assert ents.migrations.price_version(owner, until - timedelta(seconds=1)) == 1
    assert ents.migrations.price_version(owner, until) == 2
    with pytest.raises(SubscriptionNotFound):
        ents.migrations.price_version(owner, START - timedelta(days=1))
    ents.runtime.clock.advance(timedelta(days=41))
    assert ents.migrations.price_version(owner) == 2


def test_the_price_lock_rule():
    sub = Subscription(
        id="s1",
        owner=Owner("organization", "a"),
        plan_key="pro",
        plan_version=2,
        status=SubscriptionStatus.ACTIVE,
        created_at=START,
        updated_at=START,
    )
    lock = PriceLock("s1", "pro", 1, 2, START, START + timedelta(days=1), "m")
    assert price_version_at(sub, START, [lock]) == 1
    assert price_version_at(sub, START + timedelta(days=1), [lock]) == 2
    assert price_version_at(sub, START - timedelta(days=1), [lock]) == 2
    # moved on since (staff, another migration): the lock no longer applies
    assert price_version_at(attrs.evolve(sub, plan_version=3), START, [lock]) == 3


def test_a_migration_of_another_tenant_is_not_found(ents):
    pro_v1_v2(ents)
    acme = Owner("organization", "a", "acme")
    ents.subscriptions.subscribe(acme, "pro", actor="staff")
    revise_to_v2(ents)
    migration = ents.migrations.create("pro", actor="staff", tenant="acme")
    assert ents.migrations.get(migration.id, tenant="acme").total == 1
    with pytest.raises(MigrationNotFound):
        ents.migrations.get(migration.id)
    assert ents.migrations.run(migration.id, tenant="acme").counts["moved"] == 1
    assert ents.subscriptions.get(acme).plan_version == 2


def test_workers_in_threads_move_each_subscription_once(tmp_path):
    """Four workers, each with its own `Entitlements` on one SQLite file (processes on
    PostgreSQL and MariaDB: test_migrations_processes)."""
    import threading

    from entitlements.adapters.sql import SqlStore

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = SqlStore.from_url(url)
    store.create_schema()
    ents = Entitlements(store)
    pro_v1_v2(ents)
    with ents.atomic():
        subscribe_all(ents, owners(60))
    revise_to_v2(ents)
    migration = ents.migrations.create("pro", actor="staff")
    handled: list[int] = []

    def worker() -> None:
        mine = Entitlements(SqlStore.from_url(url))
        count = 0
        while not (progress := mine.migrations.run(migration.id, batch=5)).done:
            count += progress.handled
        handled.append(count + progress.handled)
        mine.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sum(handled) == 60
    assert ents.migrations.get(migration.id).counts["moved"] == 60
    moves = [
        e for o in owners(60) for e in ents.audit.for_owner(o) if e.action == "subscription.migrate"
    ]
    assert len(moves) == 60
    ents.close()
