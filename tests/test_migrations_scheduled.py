"""Migrations at a later instant on every store: each move is a scheduled change of the
subscription, in force at its own instant warm and cold without a sweep, stored by the
sweep, and taken back by canceling the migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest

from conftest import STORE_KINDS
from entitlements import Entitlements, Limit, LimitKind, ManualClock, Owner, Plan
from entitlements.domain.migration import (
    Migration,
    MigrationStatus,
    MoveAt,
    SkipReason,
    skip_reason,
)
from entitlements.domain.plan import Price
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import InvalidInput

JAN_31 = datetime(2026, 1, 31, 12, tzinfo=UTC)
FEB_10 = datetime(2026, 2, 10, 12, tzinfo=UTC)
FEB_28 = datetime(2026, 2, 28, 12, tzinfo=UTC)
MAR_10 = datetime(2026, 3, 10, 12, tzinfo=UTC)
US = timedelta(microseconds=1)
A, B, C = (Owner("organization", n) for n in ("a", "b", "c"))


@pytest.fixture(params=STORE_KINDS)
def setup(request, make_store):
    store = make_store(request.param)
    clock = ManualClock(JAN_31)
    ents = Entitlements(store, clock=clock)
    ents.plans.define(
        Plan(
            "pro",
            "Pro",
            limits={"projects": Limit(10, kind=LimitKind.GAUGE)},
            price=Price("10", "EUR"),
            status="active",
        ),
        actor="staff",
    )

    def cold() -> Entitlements:
        return Entitlements(store, clock=clock)

    yield ents, clock, cold
    ents.close()


def subscribed(ents: Entitlements, clock: ManualClock) -> None:
    """``a`` from Jan 31 (period ends Feb 28, clamped), ``b`` from Feb 10 (ends Mar 10);
    then pro v2 (export, 12 EUR)."""
    ents.subscriptions.subscribe(A, "pro", actor="staff")
    clock.set(FEB_10)
    ents.subscriptions.subscribe(B, "pro", actor="staff")
    ents.plans.revise("pro", actor="staff", features={"export": True}, price=Price("12", "EUR"))


def statuses(ents: Entitlements, migration_id: str) -> dict[str, str]:
    return {
        i.owner.id: i.status.value if i.why is None else f"{i.status.value}:{i.why.value}"
        for i in ents.migrations.items(migration_id)
    }


def test_period_end_moves_each_at_its_own_period_end_warm_and_cold(setup):
    ents, clock, cold = setup
    subscribed(ents, clock)
    migration = ents.migrations.create("pro", actor="staff", at="period_end", reason="v2")
    progress = ents.migrations.run(migration.id)
    assert progress.migration.status is MigrationStatus.COMPLETED
    assert progress.counts["scheduled"] == 2
    items = {i.owner.id: i for i in ents.migrations.items(migration.id)}
    assert (items["a"].done_at, items["b"].done_at) == (FEB_28, MAR_10)
    pending = ents.subscriptions.pending_change(A)
    assert pending is not None
    assert (pending.plan_key, pending.plan_version, pending.at) == ("pro", 2, FEB_28)
    assert pending.reason == f"migration {migration.id}: v2"
    [scheduled] = [e for e in ents.audit.for_owner(A) if e.action == "subscription.schedule_change"]
    assert scheduled.reason == f"migration {migration.id}: v2"
    assert not ents.allows(A, "export")
    assert ents.snapshot(A).valid_until <= FEB_28, "the snapshot ends at the move"
    clock.set(FEB_28 - US)
    assert not ents.allows(A, "export")
    assert not cold().allows(A, "export")
    clock.set(FEB_28)
    assert ents.allows(A, "export"), "warm"
    assert cold().allows(A, "export"), "cold"
    assert not ents.allows(B, "export")
    assert ents.subscriptions.get(A).plan_version == 2
    clock.set(MAR_10)
    assert ents.allows(B, "export")
    assert cold().subscriptions.get(B).plan_version == 2
    ents.process_due()
    for owner in (A, B):
        actions = [e.action for e in ents.audit.for_owner(owner)]
        assert actions.count("subscription.pending_change_applied") == 1
    assert ents.process_due().changes == (), "stored once"


def test_a_dated_migration_moves_everyone_at_its_instant(setup):
    ents, clock, cold = setup
    subscribed(ents, clock)
    at = FEB_10 + timedelta(days=5)
    migration = ents.migrations.create("pro", actor="staff", at=at)
    assert migration.move is MoveAt.INSTANT
    assert ents.migrations.run(migration.id).counts["scheduled"] == 2
    assert {i.done_at for i in ents.migrations.items(migration.id)} == {at}
    clock.set(at - US)
    assert [cold().subscriptions.get(o).plan_version for o in (A, B)] == [1, 1]
    clock.set(at)
    assert [ents.allows(o, "export") for o in (A, B)] == [True, True]
    assert [cold().subscriptions.get(o).plan_version for o in (A, B)] == [2, 2]


def test_a_dated_migration_run_after_its_instant_moves_now(setup):
    ents, clock, _ = setup
    subscribed(ents, clock)
    migration = ents.migrations.create("pro", actor="staff", at=FEB_10 + timedelta(days=1))
    clock.advance(days=2)
    assert ents.migrations.run(migration.id).counts["moved"] == 2
    assert ents.subscriptions.get(A).plan_version == 2


def test_past_or_naive_instants_are_refused(setup):
    ents, clock, _ = setup
    subscribed(ents, clock)
    for at in (FEB_10, FEB_10 - timedelta(days=1), datetime(2026, 3, 1), "soon"):
        with pytest.raises(InvalidInput):
            ents.migrations.create("pro", actor="staff", at=at)
    assert ents.migrations.list() == []


def test_cancel_unschedules_and_answers_are_as_if_never_scheduled(setup):
    ents, clock, cold = setup
    subscribed(ents, clock)
    migration = ents.migrations.create("pro", actor="staff", at="period_end")
    ents.migrations.run(migration.id)
    canceled = ents.migrations.cancel(migration.id, actor="staff", reason="oops")
    assert canceled.migration.status is MigrationStatus.CANCELED
    assert canceled.counts["canceled"] == 2
    assert ents.subscriptions.pending_change(A) is None
    undone = [e for e in ents.audit.for_owner(A) if e.action.startswith("subscription.cancel")]
    assert [e.reason for e in undone] == [f"migration {migration.id} canceled: oops"]
    clock.set(MAR_10 + timedelta(days=1))
    for app in (ents, cold()):
        assert [app.subscriptions.get(o).plan_version for o in (A, B)] == [1, 1]
        assert not app.allows(A, "export")
    assert all(c.request is None for c in ents.process_due().changes), "nothing to apply"
    with pytest.raises(InvalidInput):
        ents.migrations.cancel(migration.id, actor="staff")


def test_cancel_keeps_applied_moves_and_leaves_changes_that_are_not_its_own(setup):
    ents, clock, _ = setup
    subscribed(ents, clock)
    ents.subscriptions.subscribe(C, "pro", actor="staff", version=1)
    migration = ents.migrations.create("pro", actor="staff", at="period_end")
    assert ents.migrations.run(migration.id).counts["scheduled"] == 3
    ents.subscriptions.schedule_change(C, seats=4, actor="staff", replace=True)
    clock.set(FEB_28)  # a's move applied (no sweep); b's still to come
    canceled = ents.migrations.cancel(migration.id, actor="staff")
    assert statuses(ents, migration.id) == {"a": "moved", "b": "canceled", "c": "scheduled"}
    assert (canceled.counts["moved"], canceled.counts["scheduled"]) == (1, 1)
    left = next(i for i in ents.migrations.items(migration.id) if i.owner == C)
    assert left.error is not None
    assert "not this migration's move" in left.error
    assert ents.subscriptions.pending_change(C).seats == 4, "the staff change stays"
    assert [ents.subscriptions.get(o).plan_version for o in (A, B)] == [2, 1]


def test_owners_with_a_pending_change_are_skipped(setup):
    ents, clock, _ = setup
    subscribed(ents, clock)
    ents.subscriptions.subscribe(C, "pro", actor="staff", version=1)
    d = Owner("organization", "d")
    ents.subscriptions.subscribe(d, "pro", actor="staff", version=1)
    ents.subscriptions.cancel(A, actor="staff", at_period_end=True)
    ents.subscriptions.schedule_change(B, seats=3, actor="staff")
    ents.subscriptions.pause(C, actor="staff")
    first = ents.migrations.create("pro", actor="staff", at="period_end")
    preview = ents.migrations.preview(first.id)
    assert dict(preview.totals) == {"scheduled": 1, "skipped:pending_change": 3}
    ents.migrations.run(first.id)
    assert statuses(ents, first.id) == {
        "a": "skipped:pending_change",
        "b": "skipped:pending_change",
        "c": "skipped:pending_change",
        "d": "scheduled",
    }
    again = ents.migrations.create("pro", actor="staff", owners=[d])
    ents.migrations.run(again.id)
    assert statuses(ents, again.id) == {"d": "skipped:pending_change"}, "its own move too"


def test_the_price_lock_of_a_scheduled_move_starts_when_it_applies(setup):
    ents, clock, _ = setup
    subscribed(ents, clock)
    until = MAR_10 + timedelta(days=20)
    migration = ents.migrations.create(
        "pro", actor="staff", at="period_end", price_lock_until=until
    )
    ents.migrations.run(migration.id)
    assert ents.migrations.price_version(A, FEB_28 - US) == 1, "still on v1"
    clock.set(MAR_10)
    assert ents.migrations.price_version(A, FEB_28) == 1, "moved, price locked"
    assert ents.migrations.price_version(B) == 1
    assert ents.migrations.price_version(A, until) == 2


def test_a_lock_ending_before_the_scheduled_move_never_holds(setup):
    ents, clock, _ = setup
    subscribed(ents, clock)
    migration = ents.migrations.create(
        "pro", actor="staff", at="period_end", price_lock_until=FEB_28 - timedelta(days=1)
    )
    ents.migrations.run(migration.id)
    clock.set(MAR_10)
    assert ents.subscriptions.get(A).plan_version == 2
    assert ents.migrations.price_version(A, FEB_28) == 2


def test_a_subscription_without_a_period_is_skipped_by_a_period_end_migration():
    sub = Subscription(
        id="s1",
        owner=A,
        plan_key="pro",
        plan_version=1,
        status=SubscriptionStatus.ACTIVE,
        created_at=JAN_31,
        updated_at=JAN_31,
    )
    migration = Migration(
        "m", None, "pro", 2, None, MoveAt.PERIOD_END, None, None,
        OverQuotaPolicy.REFUSE, MigrationStatus.RUNNING, "staff", None, JAN_31, JAN_31,
    )  # fmt: skip
    assert skip_reason(migration, sub, change_in_flight=False) is SkipReason.NO_PERIOD
    now = attrs.evolve(migration, move=MoveAt.NOW)
    assert skip_reason(now, sub, change_in_flight=False) is None


def test_usage_over_a_lowered_limit_is_judged_when_scheduled_and_when_applied(setup):
    ents, clock, _ = setup
    c = Owner("organization", "c")
    for owner in (A, B, c):
        ents.subscriptions.subscribe(owner, "pro", actor="staff")
    ents.usage.consume(A, "projects", 8)
    ents.plans.revise("pro", actor="staff", limits={"projects": Limit(5, kind=LimitKind.GAUGE)})
    migration = ents.migrations.create("pro", actor="staff", at="period_end")
    preview = ents.migrations.preview(migration.id)
    assert dict(preview.totals) == {"scheduled": 2, "skipped:over_quota": 1}
    ents.migrations.run(migration.id)
    assert statuses(ents, migration.id) == {
        "a": "skipped:over_quota",
        "b": "scheduled",
        "c": "scheduled",
    }
    ents.usage.consume(B, "projects", 7)  # over v2's limit by the time the move applies
    clock.set(FEB_28)
    ents.process_due()
    assert [ents.subscriptions.get(o).plan_version for o in (A, B, c)] == [1, 1, 2]
    actions = [e.action for e in ents.audit.for_owner(B)]
    assert "subscription.pending_change_failed" in actions
