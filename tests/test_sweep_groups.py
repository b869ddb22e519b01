"""The sweep handles due subscriptions a group to a unit of work: the group's owners are
claimed with one statement, the rows nobody waits on (audit, history, notifications,
feed) go out one statement per table, and an item that raises costs the others nothing
(the group is tried again item by item). Plus the cheap tests that spare work which
cannot apply: the re-check's resolutions and the invoice draft."""

from __future__ import annotations

import re
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event

from entitlements import Entitlements, Limit, ManualClock, Owner, Plan, Price
from entitlements.domain.notification import Notification, NotificationKind
from entitlements.domain.plan_change import lowers_a_limit, may_lower_a_limit
from entitlements.domain.resolution import resolve
from entitlements.service import sweep as sweep_module

STORE_KINDS = ["memory", "sqlite", "postgres", "mysql"]
SQL_KINDS = ["sqlite", "postgres", "mysql"]
T0 = datetime(2030, 1, 1, tzinfo=UTC)
SMALL = Plan("small", "Small", limits={"projects": Limit(10)}, status="active")
LARGE = Plan("large", "Large", limits={"projects": Limit(100)}, status="active")


def _owners(n: int, prefix: str = "o") -> list[Owner]:
    return [Owner("organization", f"{prefix}{i:03}") for i in range(n)]


def _scheduled(ents: Entitlements, owners: list[Owner]) -> datetime:
    """Each owner on ``small`` with a move to ``large`` at its period end; that instant."""
    for owner in owners:
        ents.subscriptions.subscribe(owner, "small", actor="staff", now=T0)
        ents.subscriptions.schedule_change(owner, plan="large", actor="staff", now=T0)
    pending = ents.subscriptions.pending_change(owners[0])
    assert pending is not None
    return pending.at + timedelta(hours=1)


def _app(store, clock: ManualClock | None = None) -> Entitlements:
    ents = Entitlements(store, clock=clock or ManualClock(T0))
    for plan in (SMALL, LARGE):
        ents.plans.define(plan, actor="staff")
    return ents


@contextmanager
def _counted(engine):
    seen: Counter[str] = Counter()

    def count(conn, cursor, statement, parameters, context, executemany):
        seen[_kind(statement)] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _kind(statement: str) -> str:
    """``INSERT ent_audit_events``, ``SELECT ent_subscriptions``... (verb and table)."""
    words = re.findall(r"[A-Za-z_]+", statement)
    verb = words[0].upper() if words else ""
    tables = [w for w in words if w.startswith("ent_")]
    return f"{verb} {tables[0] if tables else ''}".strip()


def _sweep_counts(make_store, kind: str, n: int) -> tuple[Counter[str], int]:
    store = make_store(kind)
    ents = _app(store)
    at = _scheduled(ents, _owners(n))
    with _counted(store.engine) as seen:
        report = ents.process_due(at)
    assert report.failures == ()
    applied = sum(1 for c in report.changes if c.request is not None)
    ents.close()
    return seen, applied


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_group_sends_its_claim_and_its_appended_rows_once_whatever_its_size(make_store, kind):
    few, few_applied = _sweep_counts(make_store, kind, 4)
    many, many_applied = _sweep_counts(make_store, kind, 24)
    assert (few_applied, many_applied) == (4, 24)
    # per group, not per item: the claim and the plans read as often for 24 as for 4;
    # audit, history, notification and feed rows at most one statement each (on
    # PostgreSQL a few rows go in one statement together, many in one per table)
    assert many["SELECT ent_owner_revisions"] == few["SELECT ent_owner_revisions"]
    assert many["SELECT ent_plans"] == few["SELECT ent_plans"]
    for appended in (
        "INSERT ent_audit_events",
        "INSERT ent_subscription_history",
        "INSERT ent_notifications",
        "INSERT ent_changes",
    ):
        assert many[appended] <= 1, (appended, many)
    # per item: the re-read, the update and the revision's bump and stamp, no more
    per_item = (sum(many.values()) - sum(few.values())) / 20
    assert per_item <= 4, (few, many)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_poisoned_item_in_a_group_is_reported_alone_and_the_rest_apply_once(
    make_store, kind, monkeypatch
):
    clock = ManualClock(T0)
    ents = _app(make_store(kind), clock)
    owners = _owners(7)
    at = _scheduled(ents, owners)
    broken = ents.subscriptions.get(owners[3]).id
    real = sweep_module.bring_to_now

    def poisoned(tx, subscription):
        if subscription.id == broken:
            raise RuntimeError("poisoned")
        return real(tx, subscription)

    monkeypatch.setattr(sweep_module, "bring_to_now", poisoned)
    report = ents.process_due(at)
    (failure,) = report.failures
    assert (failure.item, failure.owner, failure.message) == (
        f"subscription:{broken}",
        owners[3],
        "poisoned",
    )
    for owner in owners:
        applied = [
            e
            for e in ents.audit.for_owner(owner)
            if e.action == "subscription.pending_change_applied"
        ]
        expected = 0 if owner == owners[3] else 1
        assert len(applied) == expected, owner
        clock.set(at)
        plan = ents.subscriptions.get(owner).plan_key
        assert plan == "large"  # in force at its instant either way (reads follow time)
    monkeypatch.setattr(sweep_module, "bring_to_now", real)
    again = ents.process_due(at)
    assert again.failures == ()
    assert [c.before.owner for c in again.changes if c.request is not None] == [owners[3]]
    ents.close()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_claiming_many_skips_the_owners_another_unit_of_work_holds(make_store, kind):
    store = make_store(kind)
    owners = _owners(4, "c")
    with store.unit_of_work(None) as first:
        for owner in owners[:3]:
            first.revisions.bump(owner)
        first.commit()
    with store.unit_of_work(None) as holder:
        assert holder.revisions.claim(owners[1])
        with store.unit_of_work(None) as other:
            # owners[3] has no row yet: made and held
            assert other.revisions.claim_many(owners) == {owners[0], owners[2], owners[3]}
            with store.unit_of_work(None) as third:
                # a row made and not committed yet would be waited for, never skipped
                assert third.revisions.claim_many(owners[:3]) == set()
        holder.commit()


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_appended_notifications_are_read_back_in_their_unit_of_work_and_kept_once(make_store, kind):
    store = make_store(kind)
    owner = Owner("organization", "acme")

    def note(id_: str, key: str) -> Notification:
        return Notification(
            id=id_,
            owner=owner,
            kind=NotificationKind.PLAN_CHANGED,
            key=key,
            facts={},
            about=T0,
            created_at=T0,
        )

    with store.unit_of_work(None) as uow:
        uow.notifications.append(note("n1", "k1"))
        uow.notifications.append(note("n2", "k1"))  # the same fact: kept once
        assert [n.id for n in uow.notifications.listed(owner)] == ["n1"]
        uow.notifications.append(note("n3", "k2"))
        assert not uow.notifications.add(note("n4", "k2"))

        def rolled_back() -> None:
            with uow.savepoint():
                uow.notifications.append(note("n5", "k3"))
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            rolled_back()
        uow.commit()
    with store.unit_of_work(None) as uow:
        assert sorted(n.id for n in uow.notifications.listed(owner)) == ["n1", "n3"]


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_the_catalog_says_whether_anything_is_priced(make_store, kind):
    store = make_store(kind)
    ents = _app(store)
    with store.unit_of_work(None) as uow:
        assert not uow.plans.any_priced()
    ents.plans.define(
        Plan("paid", "Paid", price=Price(Decimal("9"), "EUR"), status="active"), actor="staff"
    )
    with store.unit_of_work(None) as uow:
        assert uow.plans.any_priced()
    ents.close()


@pytest.mark.parametrize(
    ("was", "will", "seats", "expected"),
    [
        ({"projects": Limit(10)}, {"projects": Limit(100)}, (None, None), False),
        ({"projects": Limit(100)}, {"projects": Limit(10)}, (None, None), True),
        ({"projects": Limit(10)}, {"projects": Limit(None)}, (None, None), False),
        ({"projects": Limit(None)}, {"projects": Limit(10)}, (None, None), True),
        ({"projects": Limit(10)}, {}, (None, None), True),
        ({}, {"projects": Limit(10)}, (None, None), False),
        ({"seats": Limit(5, kind="seats")}, {"seats": Limit(5, kind="seats")}, (8, 8), False),
        ({"seats": Limit(5, kind="seats")}, {"seats": Limit(5, kind="seats")}, (8, 4), True),
        ({"seats": Limit(5, kind="seats")}, {"seats": Limit(9, kind="seats")}, (None, None), False),
        # seats bought are the seat limit even on a plan that names none
        ({"projects": Limit(10)}, {"projects": Limit(10)}, (8, 4), True),
        # only the limit named "seats" is the seats bought; another seat-kind limit is
        # the plan's value
        ({"members": Limit(10, kind="seats")}, {"members": Limit(5, kind="seats")}, (3, 20), True),
    ],
)
def test_the_cheap_test_says_could_whenever_the_resolutions_lower_a_limit(
    was, will, seats, expected
):
    from entitlements.domain.billing_cycle import BillingCycle
    from entitlements.domain.subscription import Subscription

    owner = Owner("organization", "acme")
    cycle = BillingCycle.monthly()
    plans = (Plan("a", "A", limits=was), Plan("b", "B", limits=will))

    def on(plan: Plan, seat_count: int | None) -> Subscription:
        return Subscription(
            id="s1",
            owner=owner,
            plan_key=plan.key,
            plan_version=1,
            status="active",
            created_at=T0,
            updated_at=T0,
            seats=seat_count,
            cycle=cycle,
            cycle_anchor=T0,
            current_period=cycle.period_containing(T0, T0),
            revision=1,
        )

    before, after = on(plans[0], seats[0]), on(plans[1], seats[1])
    could = may_lower_a_limit(before, plans[0], after, plans[1])
    assert could == expected
    from entitlements.domain.access import AccessPolicy

    policy = AccessPolicy()
    then = resolve(owner, before, plans[0], (), T0, policy, None, 0)
    now = resolve(owner, after, plans[1], (), T0, policy, None, 0)
    if lowers_a_limit(then, now):
        assert could


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_numbers_taken_in_one_unit_of_work_stay_gapless_through_a_rolled_back_savepoint(
    make_store, kind
):
    store = make_store(kind)
    with store.unit_of_work(None) as uow:
        assert [uow.invoices.next_number("INV") for _ in range(3)] == [1, 2, 3]

        def given_back() -> None:
            with uow.savepoint():
                assert uow.invoices.next_number("INV") == 4
                assert uow.invoices.next_number("INV") == 5
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            given_back()
        assert uow.invoices.next_number("INV") == 4
        assert uow.invoices.next_number("CN") == 1
        uow.commit()
    with store.unit_of_work(None) as uow:
        assert uow.invoices.next_number("INV") == 5
        uow.rollback()
    with store.unit_of_work(None) as uow:
        assert uow.invoices.next_number("INV") == 5


PRICED = Plan("paid", "Paid", price=Price(Decimal("10"), "EUR"), status="active")


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_group_of_period_ends_gets_one_invoice_each_numbered_without_gaps(make_store, kind):
    clock = ManualClock(T0)
    ents = Entitlements(make_store(kind), clock=clock)
    ents.plans.define(PRICED, actor="staff")
    owners = _owners(12)
    for owner in owners:
        ents.subscriptions.subscribe(owner, "paid", actor="staff")
    end = ents.subscriptions.get(owners[0]).current_period.end
    clock.set(end + timedelta(hours=1))
    report = ents.process_due()
    assert report.failures == ()
    invoices = [ents.invoices.list(owner) for owner in owners]
    assert [len(found) for found in invoices] == [1] * len(owners)
    assert sorted(found[0].number for found in invoices) == [
        f"INV-{T0.year}-{n:06d}" for n in range(1, len(owners) + 1)
    ]
    assert all(found[0].lines for found in invoices)
    ents.close()


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_a_group_stores_its_subscriptions_with_one_update_whatever_its_size(make_store, kind):
    few, _ = _sweep_counts(make_store, kind, 4)
    many, _ = _sweep_counts(make_store, kind, 24)
    # the group's new states, their owners' revisions and counters: one statement each
    for written in (
        "UPDATE ent_subscriptions",
        "INSERT ent_owner_revisions",
        "UPDATE ent_usage_counters",
    ):
        assert many[written] == few[written], (written, few, many)
    assert sum(many.values()) == sum(few.values()), (few, many)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_fewer_seats_than_assigned_is_refused_on_a_plan_without_a_seat_limit(make_store, kind):
    """The seats bought are the seat limit whether or not the plan names one: the cheap
    test that spares the over-quota check must not let a cut below the members through."""
    from entitlements import OverQuotaRefused

    ents = _app(make_store(kind))
    ents.plans.define(
        Plan("team", "Team", limits={"projects": Limit(10)}, status="active"), actor="staff"
    )
    acme = Owner("organization", "acme")
    ents.subscriptions.subscribe(acme, "team", actor="staff", seats=4)
    for member in ("ann", "bob", "cy"):
        ents.seats.assign(acme, member, actor="staff")
    with pytest.raises(OverQuotaRefused):
        ents.subscriptions.change_seats(acme, 2, actor="staff")
    assert ents.subscriptions.get(acme).seats == 4
    ents.close()
