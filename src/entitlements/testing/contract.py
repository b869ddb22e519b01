"""The store contract: the tests every `Store` must pass, shipped so that a third party
writing its own store runs exactly what ours run.

Use it by subclassing in your test suite and providing a ``store`` fixture that yields a
fresh, empty store (with its schema in place) and offers ``dump()`` — every stored row as
comparable data::

    import pytest
    from entitlements.testing.contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            store = MyStore(...)
            yield store
            store.close()

The tests drive the ports directly (repositories in a unit of work) and through the
`Entitlements` service, and check: identical answers, errors and ordering; optimistic
concurrency; tenant isolation; and that a failed call leaves storage exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest

from entitlements.clock import ManualClock
from entitlements.domain.actor import Actor
from entitlements.domain.addon import AddOn
from entitlements.domain.audit import AuditEvent
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.change import ChangeKind, FeedPage
from entitlements.domain.migration import (
    ItemOutcome,
    ItemStatus,
    Migration,
    MigrationItem,
    MigrationStatus,
    MoveAt,
    SkipReason,
)
from entitlements.domain.notification import Notification, NotificationKind
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Action, Feature, Limit, LimitKind, Plan, PlanStatus, Price
from entitlements.domain.provider_commands import CommandKind, CommandStatus, ProviderCommand
from entitlements.domain.requests import KeyedRequest
from entitlements.domain.scheduled import Pause
from entitlements.domain.subscription import SubscriptionStatus
from entitlements.domain.usage import (
    FOREVER,
    Counter,
    CounterAddition,
    OverQuota,
    OverQuotaPolicy,
    Reservation,
    ReservationStatus,
    SeatAssignment,
    UsageRecord,
)
from entitlements.errors import (
    Conflict,
    EntitlementsError,
    IllegalTransition,
    InvalidInput,
    LimitExceeded,
    MigrationNotFound,
    NotFound,
    OverQuotaRefused,
    OverrideNotFound,
    PlanExists,
    StaleWrite,
    SubscriptionExists,
    UnknownPlan,
)
from entitlements.ports import Store, UnitOfWork
from entitlements.service.entitlements import Entitlements

__all__ = ["CATALOG", "START", "StoreContract"]

START = datetime(2026, 1, 31, 9, 30, 15, 123456, tzinfo=UTC)

CATALOG = (
    Plan(
        "free",
        "Free",
        limits={"seats": Limit(1, "seats", kind=LimitKind.SEATS), "projects": Limit(3)},
        features={"premium": Feature(actions=frozenset({Action.READ}))},
        status=PlanStatus.ACTIVE,
        trial_days=0,
    ),
    Plan(
        "growth",
        "Growth",
        limits={
            "seats": Limit(5, "seats", kind=LimitKind.SEATS),
            "projects": Limit(20, combine="max"),
            "api_calls": Limit(None, "calls", kind=LimitKind.METERED, enforcement="soft"),
        },
        features={"premium": True, "export": True},
        price=Price(Decimal("49.90"), "EUR", BillingCycle.monthly()),
        status=PlanStatus.ACTIVE,
        owner_kinds=frozenset({"organization", "app"}),
    ),
    Plan(
        "enterprise",
        "Enterprise",
        limits={"seats": Limit(50, "seats", kind=LimitKind.SEATS), "projects": Limit.unlimited()},
        features={"premium": True, "export": True, "sso": True},
        price=Price(Decimal("4990"), "USD", BillingCycle.annual()),
        status=PlanStatus.ACTIVE,
    ),
)

ACME = Owner("organization", "acme")
GLOBEX = Owner("organization", "globex")
STAFF = Actor("ann")


_SECOND = timedelta(seconds=1)


def _rolled_back(store: Store, work: Callable[[Any], Any]) -> Any:
    """Run ``work`` in a unit of work that then fails; returns what ``work`` returned."""
    done: list[Any] = []
    with pytest.raises(RuntimeError, match="rolled back"), store.unit_of_work(None) as uow:  # noqa: PT012
        done.append(work(uow))
        raise RuntimeError("rolled back")
    return done[0]


def _noted(store: Store, owner: Owner | None, kind: ChangeKind) -> int:
    """Note one change in a unit of work of its own and commit it; its feed number."""
    with store.unit_of_work(None) as uow:
        uow.feed.note(owner, kind)
        uow.commit()
        revision = uow.committed_revision
    assert revision is not None
    return revision


def _resumed(uow: Any, owner: Owner) -> Any:
    """The owner's current subscription, written back as active."""
    current = uow.subscriptions.current(owner)
    return attrs.evolve(current, status=SubscriptionStatus.ACTIVE, suspended_from=None)


def _due(store: Store, at: datetime) -> list[str]:
    """The ids of the contracts the sweep has something to tell at ``at``."""
    with store.unit_of_work(None, read_only=True) as uow:
        return [c.id for c in uow.contracts.due(at)]


def _schedule(store: Store, contract_id: str, revision: int, at: datetime | None) -> bool:
    with store.unit_of_work(None) as uow:
        done = uow.contracts.schedule(contract_id, revision, at)
        uow.commit()
    return done


class StoreContract:
    """Subclass with a ``store`` fixture; see the module docstring."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(START)

    @pytest.fixture
    def ents(self, store: Store, clock: ManualClock) -> Entitlements:
        app = Entitlements(store, clock=clock)
        for plan in CATALOG:
            app.plans.define(plan, actor=STAFF)
        return app

    @staticmethod
    def dump(store: Any) -> Any:
        return store.dump()

    # -- plans -----------------------------------------------------------------------

    def test_plans_round_trip_exactly(self, ents: Entitlements) -> None:
        for plan in CATALOG:
            stored = ents.plans.get(plan.key)
            assert attrs.evolve(stored, revision=0) == attrs.evolve(plan, version=1, revision=0)
            assert stored.revision == 1
        assert [p.key for p in ents.plans.list()] == ["enterprise", "free", "growth"]
        assert str(ents.plans.get("growth").price.amount) == "49.90"  # type: ignore[union-attr]

    def test_plan_versions_and_plan_level_fields(self, ents: Entitlements) -> None:
        ents.plans.revise("growth", actor=STAFF, limits={"seats": Limit(10)})
        ents.plans.rename("growth", "Growth 2", actor=STAFF)
        ents.plans.archive("growth", actor=STAFF)
        versions = ents.plans.versions("growth")
        assert [v.version for v in versions] == [1, 2]
        assert {v.name for v in versions} == {"Growth 2"}
        assert {v.status for v in versions} == {PlanStatus.ARCHIVED}
        assert versions[0].limits["seats"].value == 5
        assert versions[1].limits == {"seats": Limit(10)}
        assert ents.plans.get("growth").version == 2
        with pytest.raises(UnknownPlan):
            ents.plans.get("growth", 3)
        with pytest.raises(UnknownPlan):
            ents.plans.get("platinum")
        with pytest.raises(UnknownPlan):
            ents.plans.versions("platinum")

    def test_several_plan_versions_read_at_once(self, ents: Entitlements, store: Store) -> None:
        ents.plans.revise("growth", actor=STAFF, limits={"seats": Limit(10)})
        with store.unit_of_work(None) as uow:
            plans = uow.plans.get_many([("growth", None), ("growth", 1), ("free", None)])
            assert [(p.key, p.version) for p in plans] == [
                ("growth", 2),
                ("growth", 1),
                ("free", 1),
            ]
            assert plans == [
                uow.plans.get("growth"),
                uow.plans.get("growth", 1),
                uow.plans.get("free"),
            ]
            with pytest.raises(UnknownPlan):
                uow.plans.get_many([("growth", None), ("growth", 3)])
            with pytest.raises(UnknownPlan):
                uow.plans.get_many([("platinum", None), ("free", None)])

    def test_defining_a_plan_twice_is_refused(self, ents: Entitlements, store: Any) -> None:
        before = self.dump(store)
        with pytest.raises(PlanExists):
            ents.plans.define(CATALOG[0], actor=STAFF)
        assert self.dump(store) == before

    def test_stale_plan_writes_are_refused(self, ents: Entitlements, store: Store) -> None:
        with store.unit_of_work(None) as uow:
            stale = uow.plans.get("free")
            uow.plans.update(attrs.evolve(stale, name="Free!"))
            with pytest.raises(StaleWrite):
                uow.plans.update(attrs.evolve(stale, name="Free?"))
            uow.commit()
        assert ents.plans.get("free").name == "Free!"

    # -- subscriptions ---------------------------------------------------------------

    def test_subscription_round_trips_every_field(
        self, ents: Entitlements, clock: ManualClock
    ) -> None:
        sub = ents.subscriptions.start_trial(
            ACME,
            "growth",
            actor=STAFF,
            seats=7,
            metadata={"crm": {"id": 42, "tags": ["a", "b"]}, "ok": True},
            notes="met at the fair — ünïcode",
            external_id="sub_123",
            expires_at=START + timedelta(days=400),
        )
        clock.advance(hours=1)
        ents.subscriptions.suspend(ACME, actor=STAFF)
        with ents.atomic():
            pass
        stored = ents.subscriptions.get(ACME)
        assert stored.id == sub.id
        assert stored.status is SubscriptionStatus.SUSPENDED
        assert stored.suspended_from is SubscriptionStatus.TRIALING
        assert stored.created_at == START
        assert stored.updated_at == START + timedelta(hours=1)
        assert stored.metadata == {"crm": {"id": 42, "tags": ["a", "b"]}, "ok": True}
        assert stored.revision == 2
        assert (
            attrs.evolve(
                stored,
                status=sub.status,
                suspended_from=None,
                updated_at=sub.updated_at,
                revision=1,
            )
            == sub
        )

    def test_addons_round_trip(self, ents: Entitlements, store: Store, clock: ManualClock) -> None:
        sub = ents.subscriptions.subscribe(ACME, "growth", actor=STAFF)
        addon = AddOn(
            "boost",
            limits={"projects": 30, "api_calls": None},
            features={"sso": Feature(actions=frozenset({Action.READ}))},
            quantity=2,
        )
        with store.unit_of_work(None) as uow:
            uow.subscriptions.update(attrs.evolve(sub, addons=(addon,)))
            uow.commit()
        ents.invalidate()
        assert ents.subscriptions.get(ACME).addons == (addon,)
        assert ents.limit(ACME, "projects") == 60
        assert ents.allows(ACME, "sso", "read")

    def test_pending_changes_and_pauses_round_trip(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
        boost = AddOn("boost", {"projects": 5}, ends_at=START + timedelta(days=90))
        pending = ents.subscriptions.schedule_change(
            ACME, plan="growth", seats=3, addons=[boost], actor=STAFF, reason="at renewal"
        )
        assert pending is not None
        assert ents.subscriptions.pending_change(ACME) == pending
        assert (pending.requested_by, pending.requested_at, pending.addons) == (
            "ann",
            START,
            (boost,),
        )
        with store.unit_of_work(None) as uow:
            assert [s.owner for s in uow.subscriptions.due(pending.at)] == [ACME]
            assert list(uow.subscriptions.due(pending.at - timedelta(microseconds=1))) == []
        ents.subscriptions.cancel_pending_change(ACME, actor=STAFF)
        until = START + timedelta(days=10)
        ents.subscriptions.pause(
            ACME, resume_at=until, restart_period=True, actor=STAFF, reason="holiday"
        )
        held = ents.subscriptions.get(ACME)
        assert held.status is SubscriptionStatus.PAUSED
        assert held.pause == Pause(START, until, True, "ann", "holiday")
        assert held.scheduled is None

    def test_one_live_subscription_per_owner_and_history(
        self, ents: Entitlements, store: Any
    ) -> None:
        first = ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
        before = self.dump(store)
        with pytest.raises(SubscriptionExists):
            ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
        assert self.dump(store) == before
        ents.subscriptions.cancel(ACME, actor=STAFF)
        second = ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
        assert [s.id for s in ents.subscriptions.history(ACME)] == [first.id, second.id]
        assert ents.subscriptions.get(ACME).id == second.id

    def test_repository_refuses_a_second_live_subscription(
        self, ents: Entitlements, store: Store
    ) -> None:
        sub = ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
        with store.unit_of_work(None) as uow, pytest.raises(SubscriptionExists):
            uow.subscriptions.add(attrs.evolve(sub, id="another"))

    def test_stale_subscription_writes_are_refused(self, ents: Entitlements, store: Store) -> None:
        sub = ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
        ents.subscriptions.change_seats(ACME, 2, actor=STAFF)
        with store.unit_of_work(None) as uow:
            with pytest.raises(StaleWrite) as caught:
                uow.subscriptions.update(attrs.evolve(sub, seats=9))
            assert caught.value.expected_revision == 1
        assert ents.subscriptions.get(ACME).seats == 2

    def test_many_subscriptions_are_updated_at_once_or_refused_when_one_is_stale(
        self, ents: Entitlements, store: Store
    ) -> None:
        acme = ents.subscriptions.subscribe(ACME, "growth", actor=STAFF)
        globex = ents.subscriptions.subscribe(GLOBEX, "growth", actor=STAFF)
        with store.unit_of_work(None) as uow:
            stored = uow.subscriptions.update_many(
                [attrs.evolve(acme, seats=3), attrs.evolve(globex, seats=4)]
            )
            assert [(s.seats, s.revision) for s in stored] == [
                (3, acme.revision + 1),
                (4, globex.revision + 1),
            ]
            uow.commit()
        assert ents.subscriptions.get(ACME).seats == 3
        ents.subscriptions.change_seats(GLOBEX, 5, actor=STAFF)
        with store.unit_of_work(None) as uow:
            with pytest.raises(StaleWrite) as caught:
                uow.subscriptions.update_many(
                    [attrs.evolve(stored[0], seats=5), attrs.evolve(globex, seats=6)]
                )
            assert caught.value.expected_revision == globex.revision
        assert (ents.subscriptions.get(ACME).seats, ents.subscriptions.get(GLOBEX).seats) == (3, 5)

    def test_subscriptions_cannot_move_between_owners(
        self, ents: Entitlements, store: Store
    ) -> None:
        sub = ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
        with store.unit_of_work(None) as uow, pytest.raises(InvalidInput):
            uow.subscriptions.update(attrs.evolve(sub, owner=GLOBEX))

    def test_get_by_id_and_not_found(self, ents: Entitlements, store: Store) -> None:
        sub = ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
        with store.unit_of_work(None) as uow:
            assert uow.subscriptions.get(sub.id) == sub
            with pytest.raises(NotFound):
                uow.subscriptions.get("missing")

    def test_due_and_count_on_plans(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF, trial_days=5)
        ents.subscriptions.subscribe(GLOBEX, "free", actor=STAFF)
        ents.subscriptions.subscribe(Owner("app", "1"), "free", actor=STAFF)
        ents.subscriptions.cancel(Owner("app", "1"), actor=STAFF)
        with store.unit_of_work(None) as uow:
            assert uow.subscriptions.due(START) == []
            due = uow.subscriptions.due(START + timedelta(days=5))
            assert [s.owner for s in due] == [ACME]
            listed = uow.subscriptions.due_ids(START + timedelta(days=5))
            assert list(listed) == [(s.id, s.owner) for s in due]
            assert uow.subscriptions.due_ids(START) == []
            assert uow.subscriptions.count_on_plans(["free"]) == 1
            assert uow.subscriptions.count_on_plans(["free", "growth"]) == 2
            assert uow.subscriptions.count_on_plans(["free"], exclude_owner=GLOBEX) == 0

    def test_status_counts_hold_each_owners_most_recent_subscription_as_stored(
        self, ents: Entitlements, store: Store
    ) -> None:
        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF, trial_days=5)
        ents.subscriptions.subscribe(GLOBEX, "free", actor=STAFF)
        ents.subscriptions.cancel(GLOBEX, actor=STAFF)
        ents.subscriptions.subscribe(GLOBEX, "growth", actor=STAFF)  # replaces the ended one
        app = Owner("app", "1")
        ents.subscriptions.subscribe(app, "free", actor=STAFF)
        ents.subscriptions.suspend(app, actor=STAFF)
        _rolled_back(store, lambda uow: uow.subscriptions.update(_resumed(uow, app)))
        ents.subscriptions.subscribe(_OTHER, "free", actor=STAFF)
        ents.subscriptions.suspend(_OTHER, actor=STAFF)
        read_before = ents.subscriptions.get(_OTHER)
        with store.unit_of_work(None) as uow:  # written from what another unit of work read
            resumed = SubscriptionStatus.ACTIVE
            uow.subscriptions.update(attrs.evolve(read_before, status=resumed, suspended_from=None))
            uow.commit()
        wanted = {"trialing": 1, "active": 2, "suspended": 1}
        for folds in (False, True):
            with store.unit_of_work(None) as uow:
                if folds:  # folding changes how they are kept, not what they say
                    uow.subscriptions.fold_status_counts(3)
                    uow.subscriptions.fold_status_counts(1000)
                    uow.commit()
                stored, moved = uow.subscriptions.status_counts(START)
                assert {k: v for k, v in stored.items() if v} == wanted
                assert moved == []
                stored, moved = uow.subscriptions.status_counts(START + timedelta(days=5))
                assert {k: v for k, v in stored.items() if v} == wanted  # as stored
                assert [s.owner for s in moved] == [ACME]  # the trial time ended
        with store.unit_of_work("elsewhere", read_only=True) as uow:
            assert not any(uow.subscriptions.status_counts(START)[0].values())

    def test_due_reads_only_the_statuses_asked_for(self, ents: Entitlements, store: Store) -> None:
        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF, trial_days=5)
        ents.subscriptions.subscribe(GLOBEX, "free", actor=STAFF)  # renews within the window
        later = START + timedelta(days=60)
        trialing = frozenset({SubscriptionStatus.TRIALING})
        with store.unit_of_work(None) as uow:
            assert {s.owner for s in uow.subscriptions.due(later)} == {ACME, GLOBEX}
            assert [s.owner for s in uow.subscriptions.due(later, 10, trialing)] == [ACME]
            paused = frozenset({SubscriptionStatus.PAUSED})
            assert uow.subscriptions.due(later, 10, paused) == []

    def test_search_lists_each_owners_latest_subscription(
        self, ents: Entitlements, store: Store
    ) -> None:
        ents.subscriptions.subscribe(GLOBEX, "free", actor=STAFF)
        ents.subscriptions.cancel(GLOBEX, actor=STAFF)
        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
        ents.subscriptions.subscribe(GLOBEX, "growth", actor=STAFF)
        with store.unit_of_work(None) as uow:
            latest = uow.subscriptions.search(None, None)
            assert [(s.owner, s.status.value) for s in latest] == [
                (GLOBEX, "active"),
                (ACME, "trialing"),
            ]
            assert [s.owner for s in uow.subscriptions.search(None, frozenset({"trialing"}))] == [
                ACME
            ]
            assert [s.owner for s in uow.subscriptions.search("ACM", None)] == [ACME]
            assert uow.subscriptions.search("%", None) == []
            assert len(uow.subscriptions.search(None, None, limit=1)) == 1

    def test_the_sweep_is_idempotent(
        self, ents: Entitlements, store: Any, clock: ManualClock
    ) -> None:
        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF, trial_days=30)
        ents.subscriptions.subscribe(GLOBEX, "growth", actor=STAFF)
        ents.subscriptions.cancel(GLOBEX, actor=STAFF, at_period_end=True)
        clock.advance(days=45)
        report = ents.process_due()
        assert {(c.before.owner, c.event.value) for c in report.changes} == {
            (ACME, "renew_period"),
            (ACME, "end_trial"),
            (GLOBEX, "cancel"),
        }
        assert ents.subscriptions.get(GLOBEX).canceled_at == datetime(
            2026, 2, 28, 9, 30, 15, 123456, tzinfo=UTC
        )
        after = self.dump(store)
        assert ents.process_due().nothing_due
        assert self.dump(store) == after

    # -- overrides -------------------------------------------------------------------

    def test_overrides_put_replace_remove_expire(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        ents.subscriptions.subscribe(ACME, "free", actor=STAFF)
        ents.overrides.set_limit(ACME, "projects", 10, actor=STAFF, reason="pilot")
        ents.overrides.set_limit(ACME, "projects", None, actor=STAFF, reason="pilot, unlimited")
        ents.overrides.set_feature(
            ACME,
            "export",
            enabled=True,
            actor=STAFF,
            reason="trial export",
            actions=frozenset({Action.READ, Action.CREATE}),
            expires_at=START + timedelta(days=2),
        )
        listed = ents.overrides.list(ACME)
        assert [(o.kind, o.key) for o in listed] == [
            (OverrideKind.FEATURE, "export"),
            (OverrideKind.LIMIT, "projects"),
        ]
        assert listed[1].value is None
        assert listed[1].reason == "pilot, unlimited"
        assert listed[0].actions == frozenset({Action.READ, Action.CREATE})
        assert ents.limit(ACME, "projects") is None
        with store.unit_of_work(None) as uow:
            assert uow.overrides.expired(START + timedelta(days=1)) == []
            assert [o.key for o in uow.overrides.expired(START + timedelta(days=2))] == ["export"]
        ents.overrides.remove(ACME, "limit", "projects", actor=STAFF, reason="pilot over")
        with pytest.raises(OverrideNotFound):
            ents.overrides.remove(ACME, "limit", "projects", actor=STAFF, reason="again")
        clock.advance(days=3)
        assert [o.key for o in ents.process_due().expired_overrides] == ["export"]
        assert ents.overrides.list(ACME) == []

    # -- history ---------------------------------------------------------------------

    def test_subscription_history_answers_each_instant(
        self, ents: Entitlements, store: Store
    ) -> None:
        """Every add and update is in force from its unit of work's ``effective_at``;
        among writes of one instant the last wins; a rolled-back write leaves none; the
        subscription created last is the owner's, however old its first write."""
        original = ents.subscriptions.subscribe(ACME, "growth", actor=STAFF)
        t1, t2, t3 = (START + timedelta(days=n) for n in (1, 2, 3))
        with store.unit_of_work(None) as uow:
            uow.effective_at = t1
            first = uow.subscriptions.update(attrs.evolve(original, seats=2))
            first = uow.subscriptions.update(attrs.evolve(first, seats=3))
            uow.commit()
        _rolled_back(store, lambda uow: uow.subscriptions.update(attrs.evolve(first, seats=9)))
        with store.unit_of_work(None) as uow:
            uow.effective_at = t2
            ended = uow.subscriptions.update(
                attrs.evolve(first, status=SubscriptionStatus.CANCELED, canceled_at=t2)
            )
            second = uow.subscriptions.add(
                attrs.evolve(first, id="second", created_at=t2, seats=7, revision=0)
            )
            assert uow.subscriptions.at(ACME, t2) == second  # reads its own writes
            uow.commit()
        with store.unit_of_work(None) as uow:
            uow.effective_at = t3
            uow.subscriptions.update(attrs.evolve(ended, notes="closed"))
            uow.commit()
        with store.unit_of_work(None, read_only=True) as uow:
            at = uow.subscriptions.at
            assert at(ACME, START - _SECOND) is None
            assert at(ACME, START) == original
            assert at(ACME, t1 - _SECOND) == original
            assert at(ACME, t1) == first
            assert at(ACME, t2 - _SECOND) == first
            assert at(ACME, t2) == second
            assert at(ACME, t3 + timedelta(days=30)) == second
            assert at(GLOBEX, t3) is None
            later = t3 + timedelta(days=30)
            whole = [(START - _SECOND, None), (START, original), (t1, first), (t2, second)]
            assert uow.subscriptions.states_many(
                [(ACME, START - _SECOND, later), (GLOBEX, START, t3), (ACME, t2, t3)]
            ) == [[*whole, (t3, second)], [(START, None)], [(t2, second)]]
        with store.unit_of_work("tenant-b", read_only=True) as uow:
            assert uow.subscriptions.at(Owner("organization", "acme", "tenant-b"), t3) is None

    def test_states_are_the_writes_inside_a_period(self, ents: Entitlements, store: Store) -> None:
        """``states`` gives the state at the start, then each instant written inside."""
        original = ents.subscriptions.subscribe(ACME, "growth", actor=STAFF)
        t1, t2 = START + timedelta(days=1), START + timedelta(days=2)
        with store.unit_of_work(None) as uow:
            uow.effective_at = t1
            first = uow.subscriptions.update(attrs.evolve(original, seats=2))
            first = uow.subscriptions.update(attrs.evolve(first, seats=3))
            uow.commit()
        with store.unit_of_work(None) as uow:
            uow.effective_at = t2
            second = uow.subscriptions.update(attrs.evolve(first, seats=4))
            uow.commit()
        with store.unit_of_work(None, read_only=True) as uow:
            states = uow.subscriptions.states
            assert states(ACME, START, t2 + _SECOND) == [
                (START, original),
                (t1, first),
                (t2, second),
            ]
            assert states(ACME, t1, t2) == [(t1, first)]
            assert states(GLOBEX, START, t2) == [(START, None)]
            wanted = [(ACME, START, t2 + _SECOND), (ACME, t1, t2), (GLOBEX, START, t2)]
            assert uow.subscriptions.states_many(wanted) == [states(*w) for w in wanted]
            assert uow.subscriptions.states_many([]) == []

    def test_invoices_once_per_period_with_gapless_numbers(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        """One invoice per owner and period; a number taken in a rolled-back unit of work
        is given back; payment state changes, content does not; tenants are apart."""
        from entitlements.domain.invoice import InvoiceStatus
        from entitlements.errors import InvoiceExists, InvoiceNotFound

        ents.subscriptions.subscribe(ACME, "growth", actor=STAFF)
        clock.advance(days=31)
        invoice = ents.invoices.finalize(ACME, actor=STAFF)
        assert invoice is not None
        assert invoice.number.endswith("-000001")
        with store.unit_of_work(None) as uow:
            assert uow.invoices.open_due(invoice.due_at) == [invoice]
            assert uow.invoices.open_due(invoice.due_at - _SECOND) == []
        with store.unit_of_work("tenant-b") as uow:
            assert uow.invoices.open_due(invoice.due_at) == []
        assert _rolled_back(store, lambda uow: uow.invoices.next_number("INV")) == 2
        with store.unit_of_work(None) as uow, pytest.raises(InvoiceExists):
            uow.invoices.add(attrs.evolve(invoice, id="other", number="INV-X"))
        assert invoice.period is not None
        start = invoice.period.start
        others = [
            attrs.evolve(invoice, id=f"other-{n}", number=f"INV-X{n}", owner=owner)
            for n, owner in enumerate((GLOBEX, Owner("organization", "initech")))
        ]
        with store.unit_of_work(None) as uow, pytest.raises(InvoiceExists) as taken:
            uow.invoices.add_many([*others, attrs.evolve(invoice, id="other", number="INV-X")])
        assert taken.value.owner == ACME
        with store.unit_of_work(None) as uow:  # rolled back: the others are not stored
            assert uow.invoices.for_periods([(o.owner, start) for o in others]) == {}
            assert uow.invoices.add_many(others) == others
            wanted = [(ACME, start), (GLOBEX, start), (ACME, start - _SECOND)]
            assert uow.invoices.for_periods(wanted) == {
                (ACME, start): invoice,
                (GLOBEX, start): others[0],
            }
        with store.unit_of_work(None) as uow:
            assert uow.invoices.next_number("INV") == 2
            assert uow.invoices.next_number("CN") == 1
            paid = uow.invoices.set_payment(
                attrs.evolve(
                    invoice, status=InvoiceStatus.PAID, paid_at=clock.now(), total=Decimal(0)
                )
            )
            uow.commit()
        assert paid.total == invoice.total  # only the payment state is written
        assert ents.invoices.get(invoice.id).status is InvoiceStatus.PAID
        assert ents.invoices.list(ACME) == [paid]
        assert ents.invoices.list(GLOBEX) == []
        with store.unit_of_work(None) as uow:
            assert uow.invoices.open_due(paid.due_at) == [], "a paid invoice is not open"
        with pytest.raises(InvoiceNotFound):
            ents.invoices.get(invoice.id, tenant="tenant-b")

    def test_override_history_keeps_what_was_removed(self, store: Store) -> None:
        t1, t2, t3 = (START + timedelta(days=n) for n in (1, 2, 3))

        def override(value: int, **more: Any) -> Override:
            return Override(
                ACME, OverrideKind.LIMIT, "projects", "r", STAFF.id, START, value=value, **more
            )

        with store.unit_of_work(None) as uow:
            uow.effective_at = START
            uow.overrides.put(override(5))
            uow.overrides.put(override(6))
            uow.overrides.put(
                Override(ACME, OverrideKind.FEATURE, "sso", "r", STAFF.id, START, expires_at=t2)
            )
            uow.commit()
        with store.unit_of_work(None) as uow:
            uow.effective_at = t1
            uow.overrides.remove(ACME, OverrideKind.LIMIT, "projects")
            assert [o.key for o in uow.overrides.at(ACME, t1)] == ["sso"]
            uow.commit()
        _rolled_back(store, lambda uow: uow.overrides.remove(ACME, OverrideKind.FEATURE, "sso"))
        with store.unit_of_work(None) as uow:
            uow.effective_at = t3
            uow.overrides.remove_expired(ACME, OverrideKind.FEATURE, "sso", t3)
            uow.overrides.put(override(8))
            uow.commit()
        with store.unit_of_work(None, read_only=True) as uow:
            at = uow.overrides.at
            assert at(ACME, START - _SECOND) == []
            assert [(o.key, o.value) for o in at(ACME, START)] == [("sso", None), ("projects", 6)]
            assert [o.key for o in at(ACME, t2)] == ["sso"]  # expired, not yet removed
            assert [(o.key, o.value) for o in at(ACME, t3)] == [("projects", 8)]
            assert at(GLOBEX, t3) == []
        with store.unit_of_work("tenant-b", read_only=True) as uow:
            assert uow.overrides.at(Owner("organization", "acme", "tenant-b"), t3) == []

    def test_history_without_an_instant_is_dated_by_the_wall_clock(
        self, ents: Entitlements, store: Store
    ) -> None:
        sub = ents.subscriptions.subscribe(ACME, "growth", actor=STAFF)
        before = datetime.now(UTC)
        with store.unit_of_work(None) as uow:
            uow.subscriptions.update(attrs.evolve(sub, seats=4))
            uow.commit()
        after = datetime.now(UTC)
        with store.unit_of_work(None, read_only=True) as uow:
            assert uow.subscriptions.at(ACME, before - _SECOND).seats is None  # type: ignore[union-attr]
            assert uow.subscriptions.at(ACME, after).seats == 4  # type: ignore[union-attr]

    # -- audit -----------------------------------------------------------------------

    def test_audit_is_ordered_and_complete(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
        clock.advance(minutes=1)
        ents.subscriptions.change_seats(ACME, 3, actor=Actor("bob"), reason="hires")
        events = ents.audit.for_owner(ACME)
        assert [e.action for e in events] == [
            "subscription.start_trial",
            "subscription.change_seats",
        ]
        last = events[-1]
        assert (last.actor, last.reason, last.at, last.owner) == (
            "staff:bob",
            "hires",
            START + timedelta(minutes=1),
            ACME,
        )
        assert last.before is not None
        assert last.after is not None
        assert (last.before["seats"], last.after["seats"]) == (None, 3)
        assert ents.audit.for_target(last.target) == events
        assert [e.action for e in ents.audit.for_target("plan:growth")] == ["plan.define"]
        with store.unit_of_work(None) as uow:
            event = AuditEvent(
                "e-1", START, "system:test", "test.note", "note:1", ACME, None, {"n": 1}, None
            )
            uow.audit.append(event)
            uow.commit()
        assert ents.audit.for_owner(ACME)[-1] == event

    # -- lists read a page at a time --------------------------------------------------

    def _every_page(self, read: Callable[..., Any], limit: int) -> list[list[Any]]:
        """Each page of a list, following the cursors from the first page to the last."""
        pages = [read(limit=limit)]
        while pages[-1].next is not None:
            pages.append(read(limit=limit, cursor=pages[-1].next))
        return [list(p) for p in pages]

    def test_audit_pages_follow_their_cursor_and_see_rows_written_between(
        self, ents: Entitlements, store: Store
    ) -> None:
        def note(n: int, target: str = "note:1") -> AuditEvent:
            event = AuditEvent(
                f"e-{n}", START, "system:test", "test.note", target, ACME, None, {"n": n}, None
            )
            with store.unit_of_work(None) as uow:
                uow.audit.append(event)
                uow.commit()
            return event

        events = [note(n) for n in range(7)]
        pages = self._every_page(lambda **page: ents.audit.for_owner(ACME, **page), 3)
        assert pages == [events[:3], events[3:6], events[6:]]
        newest = self._every_page(
            lambda **page: ents.audit.for_owner(ACME, newest_first=True, **page), 3
        )
        assert newest == [events[6:3:-1], events[3:0:-1], events[:1]]
        first = ents.audit.for_owner(ACME, limit=4)
        events.append(note(7))
        rest = ents.audit.for_owner(ACME, limit=10, cursor=first.next)
        assert (list(first) + list(rest), rest.next) == (events, None)
        assert ents.audit.for_owner(ACME) == events
        by_target = self._every_page(lambda **page: ents.audit.for_target("note:1", **page), 5)
        assert by_target == [events[:5], events[5:]]
        assert ents.audit.for_owner(GLOBEX).next is None

    def test_usage_history_and_contract_lists_are_paged(
        self, ents: Entitlements, store: Store
    ) -> None:
        from entitlements.domain.contracts.contract import Contract, Signer, Terms

        periods = [START + timedelta(days=30 * n) for n in range(5)]
        contracts = []
        with store.unit_of_work(None) as uow:
            for n, period in enumerate(periods):
                uow.usage.add(CounterAddition(ACME, "api_calls", period, used=n + 1))
            for n in range(5):  # two created at each instant: the id orders them
                contract = Contract(
                    f"c-{n}",
                    ACME,
                    "T",
                    "Body",
                    Terms(),
                    (Signer("s1", "n" * 64, "e" * 64, "", 1, token_hash=f"{n}" * 64),),
                    False,
                    START + timedelta(minutes=n // 2),
                    START + timedelta(days=1),
                ).with_hashes()
                contracts.append(uow.contracts.add(contract))
            uow.commit()
        history = self._every_page(lambda **page: ents.usage.history(ACME, "api_calls", **page), 2)
        assert [[c.period_start for c in p] for p in history] == [
            periods[:2],
            periods[2:4],
            periods[4:],
        ]
        assert [c.used for c in ents.usage.history(ACME, "api_calls")] == [1, 2, 3, 4, 5]
        listed = self._every_page(lambda **page: ents.contracts.list(ACME, **page), 2)
        assert listed == [contracts[:2], contracts[2:4], contracts[4:]]

    def test_subscription_history_is_paged(self, ents: Entitlements) -> None:
        ids = []
        for plan in ("growth", "free", "growth"):
            ids.append(ents.subscriptions.subscribe(ACME, plan, actor=STAFF).id)
            ents.subscriptions.cancel(ACME, actor=STAFF)
        pages = self._every_page(lambda **page: ents.subscriptions.history(ACME, **page), 2)
        assert [[s.id for s in p] for p in pages] == [ids[:2], ids[2:]]

    def test_owner_search_is_paged_newest_first(self, ents: Entitlements) -> None:
        owners = [Owner("organization", f"o{n}") for n in range(5)]
        for owner in owners:
            ents.subscriptions.subscribe(owner, "free", actor=STAFF)
        first = ents.subscriptions.search(limit=2)
        ents.subscriptions.subscribe(Owner("organization", "late"), "free", actor=STAFF)
        pages = [list(first)]
        after = first.next
        while after is not None:
            page = ents.subscriptions.search(limit=2, cursor=after)
            pages.append(list(page))
            after = page.next
        assert [[s.owner for s in p] for p in pages] == [
            owners[:2:-1][:2],
            owners[2:0:-1],
            owners[:1],
        ]

    def test_pages_refuse_a_bad_limit_or_another_lists_cursor(
        self, ents: Entitlements, store: Store
    ) -> None:
        for n in range(3):
            with store.unit_of_work(None) as uow:
                uow.audit.append(
                    AuditEvent(f"e-{n}", START, "system:test", "test.note", "note:1", ACME)
                )
                uow.commit()
        audit_cursor = ents.audit.for_owner(ACME, limit=1).next
        assert audit_cursor is not None
        for limit in (0, 1001, True, "10"):
            with pytest.raises(InvalidInput):
                ents.audit.for_owner(ACME, limit=limit)  # type: ignore[arg-type]
        for cursor in ("garbage", "", "!!", 7, audit_cursor[:-2]):
            with pytest.raises(InvalidInput):
                ents.audit.for_owner(ACME, cursor=cursor)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            ents.usage.history(ACME, "api_calls", cursor=audit_cursor)
        with pytest.raises(InvalidInput):
            ents.contracts.list(ACME, cursor=audit_cursor)
        with pytest.raises(InvalidInput):
            ents.audit.for_owner(ACME, cursor=audit_cursor, newest_first=True)

    # -- failure leaves nothing behind -----------------------------------------------

    def test_a_failed_call_leaves_storage_exactly_as_it_was(
        self, ents: Entitlements, store: Any
    ) -> None:
        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
        failing: list[Callable[[], object]] = [
            lambda: ents.subscriptions.resume(ACME, actor=STAFF),
            lambda: ents.subscriptions.change_seats(ACME, -1, actor=STAFF),
            lambda: ents.subscriptions.change_plan(ACME, "platinum", actor=STAFF),
            lambda: ents.subscriptions.start_trial(
                GLOBEX, "growth", actor=STAFF, now=datetime(2026, 1, 1)
            ),
            lambda: ents.subscriptions.subscribe(Owner("customer", "c"), "growth", actor=STAFF),
            lambda: ents.overrides.remove(ACME, "feature", "nothing", actor=STAFF, reason="x"),
            lambda: ents.plans.set_status("growth", "draft", actor=STAFF),
        ]
        for call in failing:
            before = self.dump(store)
            with pytest.raises(EntitlementsError):
                call()
            assert self.dump(store) == before

    def test_atomic_blocks_commit_together_or_not_at_all(
        self, ents: Entitlements, store: Any
    ) -> None:
        before = self.dump(store)

        def provision() -> None:
            with ents.atomic():
                ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
                ents.overrides.set_feature(ACME, "sso", enabled=True, actor=STAFF, reason="deal")
                raise RuntimeError("the host's part failed")

        with pytest.raises(RuntimeError):
            provision()
        assert self.dump(store) == before
        with ents.atomic():
            ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
            with pytest.raises(IllegalTransition):
                ents.subscriptions.resume(ACME, actor=STAFF)
            ents.overrides.set_feature(ACME, "sso", enabled=True, actor=STAFF, reason="deal")
        assert ents.allows(ACME, "sso")
        assert len(ents.audit.for_owner(ACME)) == 2

    # -- tenants ---------------------------------------------------------------------

    def test_tenants_never_see_or_touch_each_other(self, ents: Entitlements, store: Store) -> None:
        a = Owner("app", "1", tenant="tenant-a")
        b = Owner("app", "1", tenant="tenant-b")
        sub_a = ents.subscriptions.subscribe(a, "growth", actor=STAFF)
        ents.overrides.set_feature(a, "sso", enabled=True, actor=STAFF, reason="deal")
        assert ents.subscriptions.find(b) is None
        assert ents.overrides.list(b) == []
        assert ents.audit.for_owner(b) == []
        assert not ents.allows(b, "export")
        with store.unit_of_work("tenant-b") as uow:
            with pytest.raises(NotFound):
                uow.subscriptions.get(sub_a.id)
            with pytest.raises(InvalidInput):
                uow.subscriptions.current(a)
            with pytest.raises(InvalidInput):
                uow.overrides.put(
                    Override.feature(a, "x", enabled=True, reason="r", actor="s", at=START)
                )
            with pytest.raises((NotFound, InvalidInput)):
                uow.subscriptions.update(attrs.evolve(sub_a, seats=99))
            assert uow.subscriptions.due(START + timedelta(days=400)) == []
            assert uow.overrides.expired(START + timedelta(days=400)) == []
            assert uow.audit.for_target(f"subscription:{sub_a.id}") == []
            assert uow.subscriptions.count_on_plans(["growth"]) == 0
        ents.subscriptions.subscribe(b, "free", actor=STAFF)
        assert ents.subscriptions.get(a).plan_key == "growth"
        assert ents.subscriptions.get(b).plan_key == "free"
        assert set(store.tenants()) == {"tenant-a", "tenant-b"}

    def test_identifiers_are_case_sensitive(self, ents: Entitlements) -> None:
        upper, lower = Owner("organization", "Acme"), Owner("organization", "acme")
        ents.subscriptions.subscribe(upper, "growth", actor=STAFF)
        ents.subscriptions.subscribe(lower, "free", actor=STAFF)
        assert ents.subscriptions.get(upper).plan_key == "growth"
        assert ents.subscriptions.get(lower).plan_key == "free"
        ents.overrides.set_feature(lower, "sso", enabled=True, actor=STAFF, reason="r")
        assert ents.overrides.list(upper) == []

    # -- usage -------------------------------------------------------------------------

    def test_usage_counters_are_conditional_and_keep_history(self, store: Store) -> None:
        later = START + timedelta(days=31)
        with store.unit_of_work(None) as uow:
            usage = uow.usage
            assert usage.counter(ACME, "api_calls", START) == Counter(ACME, "api_calls", START)
            assert usage.add(
                CounterAddition(ACME, "api_calls", START, used=7, ceiling=10)
            ) == Counter(ACME, "api_calls", START, 7)
            assert usage.add(
                CounterAddition(ACME, "api_calls", START, reserved=3, ceiling=10)
            ) == Counter(ACME, "api_calls", START, 7, 3)
            assert usage.add(CounterAddition(ACME, "api_calls", START, used=1, ceiling=10)) is None
            assert usage.add(
                CounterAddition(ACME, "api_calls", START, used=1, reserved=-1, ceiling=10)
            ) == Counter(ACME, "api_calls", START, 8, 2)
            assert usage.add(CounterAddition(ACME, "api_calls", START, used=-9)) is None
            assert usage.add(CounterAddition(ACME, "api_calls", later, used=2)) == Counter(
                ACME, "api_calls", later, 2
            )
            assert usage.set_used(ACME, "projects", FOREVER, 4) == Counter(
                ACME, "projects", FOREVER, 4
            )
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert [
                (c.period_start, c.used, c.reserved) for c in uow.usage.counters(ACME, "api_calls")
            ] == [
                (START, 8, 2),
                (later, 2, 0),
            ]
            assert uow.usage.counter(GLOBEX, "api_calls", START).used == 0
        with store.unit_of_work("tenant-b") as uow:
            assert uow.usage.counters(Owner("organization", "acme", "tenant-b"), "api_calls") == []

    def test_a_batch_adds_to_many_counters_only_when_each_still_matches(self, store: Store) -> None:
        def adding(owner: Owner, used: int, ceiling: int | None, revision: int = 0) -> Any:
            return CounterAddition(
                owner, "api_calls", START, used, ceiling=ceiling, revision=revision, now=START
            )

        with store.unit_of_work(None) as uow:
            uow.usage.add(CounterAddition(ACME, "api_calls", START, used=1))
            uow.usage.add(CounterAddition(GLOBEX, "api_calls", START, used=1))
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert uow.usage.add_counted_many([adding(ACME, 4, 10), adding(GLOBEX, 2, None)])
            uow.commit()
        for refused in (
            [adding(ACME, 1, 10), adding(GLOBEX, 9, 10)],  # over the ceiling
            [adding(ACME, 1, None, revision=7), adding(GLOBEX, 1, None)],  # terms moved
        ):
            with store.unit_of_work(None) as uow:
                assert not uow.usage.add_counted_many(refused)
        with store.unit_of_work(None) as uow:
            assert uow.usage.counter(ACME, "api_calls", START).used == 5
            assert uow.usage.counter(GLOBEX, "api_calls", START).used == 3
            assert uow.usage.add_counted_many([])

    def test_usage_records_are_idempotent_by_key(self, store: Store) -> None:
        with store.unit_of_work(None) as uow:
            first = UsageRecord("r1", ACME, "api_calls", 5, START, START, key="req-1")
            assert uow.usage.add_record(first) is None
            assert (
                uow.usage.add_record(
                    UsageRecord("r2", ACME, "api_calls", 9, START, START, key="req-1")
                )
                == first
            )
            assert (
                uow.usage.add_record(UsageRecord("r3", ACME, "api_calls", 2, START, START)) is None
            )
            assert (
                uow.usage.add_record(
                    UsageRecord("r4", GLOBEX, "api_calls", 2, START, START, key="req-1")
                )
                is None
            )
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert [r.id for r in uow.usage.records(ACME, "api_calls", START)] == ["r1", "r3"]

    def test_reservations_round_trip(self, store: Store) -> None:
        held = Reservation(
            "res-1", ACME, "api_calls", 5, START, START, START + timedelta(hours=1), key="job"
        )
        with store.unit_of_work(None) as uow:
            assert uow.usage.add_reservation(held) is None
            assert uow.usage.add_reservation(attrs.evolve(held, id="res-2")) == held
            assert uow.usage.reservation(ACME, "res-1") == held
            with pytest.raises(NotFound):
                uow.usage.reservation(GLOBEX, "res-1")
            assert uow.usage.held_reservations_due(START) == []
            assert uow.usage.held_reservations_due(START + timedelta(hours=1)) == [held]
            done = attrs.evolve(
                held, status=ReservationStatus.COMMITTED, committed=4, settled_at=START
            )
            assert uow.usage.settle_reservation(done)
            assert not uow.usage.settle_reservation(
                attrs.evolve(held, status=ReservationStatus.RELEASED, settled_at=START)
            ), "a reservation settles once"
            assert uow.usage.reservation(ACME, "res-1") == done
            assert uow.usage.held_reservations_due(START + timedelta(days=1)) == []
            uow.commit()

    def test_idempotency_keys_are_forgotten_after_the_window(self, store: Store) -> None:
        later = START + timedelta(days=40)
        with store.unit_of_work(None) as uow:
            uow.usage.add_record(UsageRecord("r1", ACME, "api_calls", 5, START, START, key="k"))
            uow.usage.add_record(UsageRecord("r2", ACME, "api_calls", 1, START, later, key="n"))
            settled = Reservation(
                "res-1", ACME, "api_calls", 5, START, START, START + timedelta(hours=1), key="j"
            )
            uow.usage.add_reservation(settled)
            uow.usage.settle_reservation(
                attrs.evolve(settled, status=ReservationStatus.RELEASED, settled_at=START)
            )
            uow.commit()
        with store.unit_of_work("tenant-b") as uow:
            assert uow.usage.forget_keys(later) == 0  # another tenant's keys stay
        with store.unit_of_work(None) as uow:
            assert uow.usage.forget_keys(START) == 0
            assert uow.usage.forget_keys(later) == 2
            uow.commit()
        with store.unit_of_work(None) as uow:
            kept = uow.usage.records(ACME, "api_calls", START)
            assert [(r.id, r.key) for r in kept] == [("r1", None), ("r2", "n")]
            assert uow.usage.reservation(ACME, "res-1").key is None
            again = UsageRecord("r3", ACME, "api_calls", 5, START, later, key="k")
            assert uow.usage.add_record(again) is None  # a forgotten key records anew

    def test_keyed_requests_are_claimed_once_settled_and_forgotten(self, store: Store) -> None:
        first = KeyedRequest(ACME, "req-1", "contracts.issue", "d1", START)
        with store.unit_of_work(None) as uow:
            assert uow.requests.claim(first) is None
            uow.requests.settle(ACME, "req-1", {"contract": "c1"})
            uow.commit()
        with store.unit_of_work(None) as uow:
            again = uow.requests.claim(attrs.evolve(first, digest="d2"))
            assert again == attrs.evolve(first, outcome={"contract": "c1"}), "nothing replaced"
            other = attrs.evolve(first, owner=Owner("organization", "other"))
            assert uow.requests.claim(other) is None, "keys are scoped to their owner"
        with store.unit_of_work(None) as uow:
            assert uow.requests.claim(other) is None, "a rolled-back claim is gone"
        with store.unit_of_work("tenant-b") as uow:
            assert uow.requests.forget(START + timedelta(days=1)) == 0  # another tenant's
        with store.unit_of_work(None) as uow:
            assert uow.requests.forget(START) == 0
            assert uow.requests.forget(START + timedelta(days=1)) == 1
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert uow.requests.claim(first) is None, "a forgotten key is claimed anew"

    @staticmethod
    def _migration_with_three_items(store: Store) -> Migration:
        """A running migration m1: s1 moved, s2 scheduled for three days on, s3 pending."""
        migration = Migration(
            id="m1",
            tenant=None,
            plan_key="pro",
            to_version=2,
            from_versions=None,
            move=MoveAt.NOW,
            move_at=None,
            price_lock_until=START + timedelta(days=30),
            if_over_quota=OverQuotaPolicy.REFUSE,
            status=MigrationStatus.DRAFT,
            actor="staff:ann",
            reason=None,
            created_at=START,
            updated_at=START,
        )
        items = [
            MigrationItem("m1", n, f"s{n}", Owner("organization", f"o{n}"), 1) for n in range(1, 4)
        ]
        with store.unit_of_work(None) as uow:
            uow.migrations.add(migration, items)
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert uow.migrations.get("m1") == migration
            assert [i.seq for i in uow.migrations.claim("m1", 2)] == [1, 2]
            moved = ItemOutcome(ItemStatus.MOVED, moved_from=1).settle(items[0], START)
            uow.migrations.settle(moved)
            later = START + timedelta(days=3)
            scheduled = ItemOutcome(ItemStatus.SCHEDULED, moved_from=1, takes_effect=later)
            uow.migrations.settle(scheduled.settle(items[1], START))
            running = (MigrationStatus.DRAFT,)
            assert uow.migrations.set_status("m1", running, MigrationStatus.RUNNING, START)
            assert not uow.migrations.set_status("m1", running, MigrationStatus.RUNNING, START)
            uow.commit()
        return migration

    def test_migration_items_are_claimed_settled_counted_and_canceled(self, store: Store) -> None:
        self._migration_with_three_items(store)
        with store.unit_of_work(None) as uow:
            assert [i.seq for i in uow.migrations.claim("m1", 5)] == [3]
            assert uow.migrations.counts("m1") == {"moved": 1, "scheduled": 1, "pending": 1}
            (moved,) = uow.migrations.items("m1", status="moved")
            assert (moved.seq, moved.subscription_id) == (1, "s1")
            assert uow.migrations.cancel_pending("m1", START) == 1
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert uow.migrations.claim("m1", 5) == []
            assert [m.status for m in uow.migrations.list()] == [MigrationStatus.RUNNING]
        self._migrations_are_the_tenants_own(store)

    def test_migration_items_are_settled_many_at_once(self, store: Store) -> None:
        self._migration_with_three_items(store)
        with store.unit_of_work(None) as uow:
            (third,) = uow.migrations.claim("m1", 5)
            (first,) = uow.migrations.items("m1", status="moved")
            skipped = ItemOutcome.skipped(SkipReason.NO_DIFF).settle(third, START)
            failed = ItemOutcome(ItemStatus.FAILED, error="Boom: x").settle(first, START)
            uow.migrations.settle_many([skipped, failed])
            uow.migrations.settle_many([])
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert uow.migrations.counts("m1") == {"failed": 1, "scheduled": 1, "skipped": 1}
            assert uow.migrations.items("m1", status="skipped") == [skipped]
            assert uow.migrations.items("m1", status="failed") == [failed]

    def test_migration_price_locks_start_when_a_move_takes_effect(self, store: Store) -> None:
        self._migration_with_three_items(store)
        with store.unit_of_work(None) as uow:
            assert [lock.from_version for lock in uow.migrations.price_locks("s1")] == [1]
            # a scheduled move's lock starts at its instant (the item's done_at)
            later = START + timedelta(days=3)
            assert [lock.moved_at for lock in uow.migrations.price_locks("s2")] == [later]
            assert uow.migrations.price_locks("s3") == []

    @staticmethod
    def _migrations_are_the_tenants_own(store: Store) -> None:
        with store.unit_of_work("tenant-b") as uow:
            assert uow.migrations.list() == []
            with pytest.raises(MigrationNotFound):
                uow.migrations.get("m1")

    @staticmethod
    def _four_notifications(store: Store) -> datetime:
        """Acme's k1, k2, k3 and another owner's k1, written in that order at `START`;
        returns a minute later, the instant the tests claim them until."""
        with store.unit_of_work(None) as uow:
            for owner, key in ((ACME, "k1"), (_OTHER, "k1"), (ACME, "k2"), (ACME, "k3")):
                assert uow.notifications.add(_note(owner, key))
            assert not uow.notifications.add(attrs.evolve(_note(ACME, "k1"), id="again"))
            uow.commit()
        return START + timedelta(minutes=1)

    def test_notifications_are_one_per_fact_and_claimed_in_order(self, store: Store) -> None:
        later = self._four_notifications(store)
        with store.unit_of_work(None) as uow:
            failed = attrs.evolve(
                uow.notifications.get("n-acme-k1"), attempts=1, next_attempt_at=later
            )
            assert uow.notifications.update(failed, None)
            claimed = uow.notifications.claim("w1", START, later, 10)
            uow.commit()
        assert [n.id for n in claimed] == ["n-other-k1"], "acme waits behind its first"
        assert claimed[0].claimed_by == "w1"
        with store.unit_of_work(None) as uow:
            assert uow.notifications.claim("w2", START, later, 10) == []
            assert uow.notifications.delivered(["n-other-k1"], "w2", START) == 0, "not w2's"
            assert uow.notifications.delivered(["n-other-k1"], "w1", START) == 1
            taken = uow.notifications.claim("w2", later, later + timedelta(minutes=1), 2)
            uow.notifications.release([n.id for n in taken], "w2")
            uow.commit()
        assert [n.id for n in taken] == ["n-acme-k1", "n-acme-k2"], "in order, up to the limit"

    def test_a_claim_or_delivery_rolled_back_leaves_what_was_handed_out_as_it_was(
        self, store: Store
    ) -> None:
        later = self._four_notifications(store)
        with store.unit_of_work(None) as uow:
            read = uow.notifications.get("n-other-k1")
            rolled_back = uow.notifications.claim("w1", START, later, 10)
            with pytest.raises(LookupError):
                _delivered_then_undone(uow, "n-other-k1", "w1")
            assert uow.notifications.get("n-other-k1").delivered_at is None, "savepoint"
        assert read.claimed_by is None
        assert [n.claimed_by for n in rolled_back] == ["w1"] * 4, "as handed out"
        with store.unit_of_work(None) as uow:
            assert uow.notifications.get("n-other-k1").claimed_by is None, "rolled back"
            claimed = uow.notifications.claim("w2", START, later, 10)
            assert [n.id for n in claimed] == [n.id for n in rolled_back]

    def test_a_notification_held_never_changes_as_it_is_delivered_or_claimed_again(
        self, store: Store
    ) -> None:
        later = self._four_notifications(store)
        with store.unit_of_work(None) as uow:
            claimed = uow.notifications.claim("w2", START, later, 10)
            assert uow.notifications.delivered(["n-other-k1", "n-acme-k1"], "w2", START) == 2
            uow.commit()
        assert [(n.claimed_by, n.delivered_at) for n in claimed] == [("w2", None)] * 4
        with store.unit_of_work(None) as uow:
            taken = uow.notifications.get("n-other-k1")
            assert (taken.claimed_by, taken.delivered_at) == (None, START)
            assert not uow.notifications.update(taken, "w2"), "a delivery let go of it"
            again = uow.notifications.claim("w3", later, later + timedelta(minutes=1), 10)
            assert [n.id for n in again] == ["n-acme-k2", "n-acme-k3"], "w2's claim ran out"
            uow.notifications.release(["n-acme-k3"], "w3")
            uow.commit()
        assert [n.claimed_by for n in claimed[2:]] == ["w2", "w2"], "what w2 holds stays"
        with store.unit_of_work(None) as uow:
            assert uow.notifications.get("n-acme-k2").claimed_by == "w3"
            assert uow.notifications.get("n-acme-k3").claimed_by is None
            assert uow.notifications.delivered(["n-acme-k2", "n-acme-k3"], "w3", later) == 1

    def test_notifications_are_listed_newest_first_and_purged_once_delivered(
        self, store: Store
    ) -> None:
        later = self._four_notifications(store)
        with store.unit_of_work(None) as uow:
            (claimed, *_) = uow.notifications.claim("w1", START, later, 1)
            assert uow.notifications.delivered([claimed.id], "w1", START) == 1
            uow.commit()
        with store.unit_of_work(None) as uow:
            listed = uow.notifications.listed(ACME)
            assert [n.id for n in listed] == ["n-acme-k3", "n-acme-k2", "n-acme-k1"]
            assert uow.notifications.listed(failed=True) == []
            assert uow.notifications.get(claimed.id).delivered_at == START
        with store.unit_of_work("tenant-b") as uow:
            assert uow.notifications.listed() == []
            assert uow.notifications.purge(later) == 0
        with store.unit_of_work(None) as uow:
            assert uow.notifications.purge(START) == 0
            assert uow.notifications.purge(later) == 1
            uow.commit()
        with store.unit_of_work(None) as uow:
            with pytest.raises(NotFound):
                uow.notifications.get(claimed.id)
            assert uow.notifications.add(_note(claimed.owner, claimed.key)), (
                "a forgotten fact is new again"
            )

    def test_claims_and_rule_locks(self, store: Store) -> None:
        with store.unit_of_work(None) as uow:
            assert uow.revisions.claim(ACME)  # an owner never written before
            uow.revisions.lock_rule("one-free-plan")
            uow.revisions.lock_rule("one-free-plan")  # held already: no wait on oneself
            first = uow.revisions.bump(ACME)
            assert first > 0
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert uow.revisions.claim(ACME)
            assert uow.revisions.current(ACME) == first

    def test_the_sweeps_override_removal_is_conditional(self, store: Store) -> None:
        expiring = Override.limit(
            ACME,
            "projects",
            value=3,
            reason="r",
            actor="staff:a",
            at=START,
            expires_at=START + timedelta(days=1),
        )
        with store.unit_of_work(None) as uow:
            uow.overrides.put(expiring)
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert uow.overrides.remove_expired(ACME, OverrideKind.LIMIT, "projects", START) is None
            renewed = attrs.evolve(expiring, expires_at=START + timedelta(days=9))
            assert uow.overrides.put(renewed) == expiring  # an upsert of the same key
            after = START + timedelta(days=2)
            assert uow.overrides.remove_expired(ACME, OverrideKind.LIMIT, "projects", after) is None
            gone = uow.overrides.remove_expired(
                ACME, OverrideKind.LIMIT, "projects", START + timedelta(days=9)
            )
            assert gone == renewed
            assert uow.overrides.for_owner(ACME) == []

    def test_seat_assignments(self, store: Store) -> None:
        with store.unit_of_work(None) as uow:
            uow.seats.add(SeatAssignment(ACME, "bob", START))
            uow.seats.add(SeatAssignment(ACME, "ann", START))
            uow.seats.add(SeatAssignment(ACME, "ann", START, pool="editors"))
            with pytest.raises(Conflict):
                uow.seats.add(SeatAssignment(ACME, "ann", START))
            assert [a.member for a in uow.seats.assigned(ACME, "seats")] == ["ann", "bob"]
            assert uow.seats.remove(ACME, "seats", "bob") == SeatAssignment(ACME, "bob", START)
            with pytest.raises(NotFound):
                uow.seats.remove(ACME, "seats", "bob")
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert [a.member for a in uow.seats.assigned(ACME, "seats")] == ["ann"]
            assert [a.pool for a in uow.seats.assigned(ACME, "editors")] == ["editors"]

    def test_usage_through_the_service(
        self, ents: Entitlements, store: Any, clock: ManualClock
    ) -> None:
        ents.subscriptions.subscribe(ACME, "growth", actor=STAFF)
        ents.usage.consume(ACME, "api_calls", 5, key="req-1")
        assert ents.usage.consume(ACME, "api_calls", 5, key="req-1").duplicate
        assert ents.usage.total(ACME, "api_calls") == 5
        for member in ("ann", "bob", "cy", "dee", "eve"):
            ents.seats.assign(ACME, member, actor=STAFF)
        before = self.dump(store)
        with pytest.raises(LimitExceeded):
            ents.seats.assign(ACME, "fay", actor=STAFF)
        assert self.dump(store) == before
        ents.usage.set_gauge(ACME, "projects", 15)
        held = ents.usage.reserve(ACME, "api_calls", 20, ttl=timedelta(minutes=5))
        clock.advance(minutes=6)
        assert [r.id for r in ents.process_due().expired_reservations] == [held.id]
        with pytest.raises(OverQuotaRefused):
            ents.subscriptions.change_plan(ACME, "free", actor=STAFF)
        change = ents.subscriptions.change_plan(
            ACME, "free", actor=STAFF, if_over_quota=OverQuotaPolicy.ALLOW
        )
        assert change.over_quota == (
            OverQuota("api_calls", 0, 5),  # Free has no API calls at all
            OverQuota("projects", 3, 15),
            OverQuota("seats", 1, 5),
        )

    # -- contracts -----------------------------------------------------------------------

    def test_contract_flow_and_events_are_append_only(
        self, ents: Entitlements, clock: ManualClock
    ) -> None:
        from entitlements.domain.contracts.contract import ContractStatus, SignerSpec

        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
        contract = ents.contracts.issue(
            ACME,
            title="MSA",
            body="Terms.\r\nMore terms.",
            actor=STAFF,
            plan_key="growth",
            amount=Decimal("99.90"),
            currency="EUR",
            signers=[
                SignerSpec("Ada", "ada@acme.test", "CEO", 1),
                SignerSpec("Bob", "bob@acme.test", "CFO", 2),
            ],
        )
        assert ents.contracts.get(ACME, contract.id) == contract
        tokens = ents.contracts.send(ACME, contract.id, actor=STAFF)
        first = list(ents.contracts.events(ACME, contract.id))
        for token in tokens.values():
            clock.advance(minutes=1)
            ents.contracts.open(token, ip="192.0.2.1", user_agent="UA/1")
            ents.contracts.consent(token, consent_text="I agree", consent_version="v1")
            ents.contracts.sign(token, drawing=b"\x89PNG\r\n\x1a\n" + bytes(16), ip="192.0.2.1")
        events = list(ents.contracts.events(ACME, contract.id))
        assert events[: len(first)] == first
        assert ents.contracts.get(ACME, contract.id).status is ContractStatus.COMPLETED
        assert ents.contracts.verify(ACME, contract.id).ok
        ents.contracts.erase_personal_data(ACME, contract.id, actor=STAFF, reason="request")
        assert list(ents.contracts.events(ACME, contract.id)) == events
        assert ents.contracts.verify(ACME, contract.id).ok
        converted = ents.contracts.convert(ACME, contract.id, actor=STAFF, seats=3)
        assert converted.metadata["contract_id"] == contract.id
        assert list(ents.contracts.events(ACME, contract.id)) == events
        with pytest.raises(NotFound):
            ents.contracts.get(GLOBEX, contract.id)

    def test_search_and_preview_leave_out_owners_the_actor_may_not_read(
        self, ents: Entitlements
    ) -> None:
        from entitlements.errors import NotAuthorized
        from entitlements.service.authorization import PermissionRules

        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
        ents.subscriptions.start_trial(GLOBEX, "growth", actor=STAFF)
        ents.runtime.authorizer = PermissionRules(
            can_read=lambda actor, owner: actor.id != "eve" or owner != GLOBEX
        )
        eve = Actor("eve")
        assert {s.owner for s in ents.subscriptions.search(actor=eve)} == {ACME}
        assert ents.subscriptions.search("globex", actor=eve) == []
        assert {s.owner for s in ents.subscriptions.search(actor=STAFF)} == {ACME, GLOBEX}
        assert ents.subscriptions.preview_change(ACME, "free", actor=eve) is not None
        with pytest.raises(NotAuthorized):
            ents.subscriptions.preview_change(GLOBEX, "free", actor=eve)

    def test_contracts_awaiting_signature_are_the_sent_unfinished_unexpired_ones(
        self, ents: Entitlements, clock: ManualClock
    ) -> None:
        from entitlements.domain.contracts.contract import SignerSpec
        from entitlements.service.authorization import PermissionRules

        def contract(owner: Owner, days: int, signers: int = 1) -> str:
            made = ents.contracts.issue(
                owner,
                title=f"MSA {owner.id} {days}",
                body="Terms.",
                actor=STAFF,
                valid_for=timedelta(days=days),
                signers=[SignerSpec(f"S{n}", f"s{n}@x.test") for n in range(signers)],
            )
            return made.id

        draft = contract(ACME, 30)  # never sent
        later = contract(ACME, 20, signers=2)
        tokens = ents.contracts.send(ACME, later, actor=STAFF)
        soon = contract(GLOBEX, 5)
        ents.contracts.send(GLOBEX, soon, actor=STAFF)
        done = contract(GLOBEX, 9)
        token = ents.contracts.send(GLOBEX, done, actor=STAFF)["s1"]
        ents.contracts.open(token)
        ents.contracts.consent(token, consent_text="I agree", consent_version="v1")
        ents.contracts.sign(token, typed_name="S0")
        half = tokens["s1"]
        ents.contracts.open(half)
        ents.contracts.consent(half, consent_text="I agree", consent_version="v1")
        ents.contracts.sign(half, typed_name="S0")
        assert [c.id for c in ents.contracts.awaiting_signature()] == [soon, later]
        assert draft not in [c.id for c in ents.contracts.awaiting_signature()]
        ents.runtime.authorizer = PermissionRules(
            can_read=lambda actor, owner: actor.id != "eve" or owner != GLOBEX
        )
        assert [c.id for c in ents.contracts.awaiting_signature(actor="eve")] == [later]
        clock.advance(days=6)  # soon's window closed: expired in effect, though unswept
        assert [c.id for c in ents.contracts.awaiting_signature()] == [later]

    def _sent_contract(self, ents: Entitlements) -> tuple[Any, dict[str, str]]:
        from entitlements.domain.contracts.contract import SignerSpec

        signers = [SignerSpec("S0", "s0@x.test"), SignerSpec("S1", "s1@x.test")]
        made = ents.contracts.issue(ACME, title="MSA", body="Terms.", actor=STAFF, signers=signers)
        tokens = ents.contracts.send(ACME, made.id, actor=STAFF)
        return ents.contracts.get(ACME, made.id), tokens

    def test_contracts_are_due_at_once_when_written_out_for_signature_until_scheduled(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        from entitlements.domain.contracts.contract import SignerSpec

        ents.contracts.issue(
            ACME, title="Draft", body="Terms.", actor=STAFF, signers=[SignerSpec("D", "d@x.test")]
        )
        assert _due(store, clock.now() + timedelta(days=400)) == []  # a draft: nothing to tell
        sent, _ = self._sent_contract(ents)
        assert _due(store, sent.created_at) == [sent.id]
        later = clock.now() + timedelta(days=2)
        assert _schedule(store, sent.id, sent.revision, later)
        assert _due(store, later - _SECOND) == []
        assert _due(store, later) == [sent.id]

    def test_a_stale_or_rolled_back_schedule_moves_nothing(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        sent, _ = self._sent_contract(ents)
        later = clock.now() + timedelta(days=2)
        assert _schedule(store, sent.id, sent.revision, later)
        assert not _schedule(store, sent.id, sent.revision - 1, None)  # a stale read: no move
        assert _due(store, later) == [sent.id]
        assert _rolled_back(store, lambda uow: uow.contracts.schedule(sent.id, sent.revision, None))
        assert _due(store, later) == [sent.id]
        assert _schedule(store, sent.id, sent.revision, None)
        assert _due(store, later) == []

    def test_a_contract_written_again_is_due_at_once_and_a_closed_one_never(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        sent, tokens = self._sent_contract(ents)
        assert _schedule(store, sent.id, sent.revision, None)
        clock.advance(hours=1)
        ents.contracts.open(tokens["s1"])  # written again: due at once
        assert _due(store, clock.now()) == [sent.id]
        assert _due(store, sent.expires_at) == []  # its signing window closed
        for token in tokens.values():
            ents.contracts.open(token)
            ents.contracts.consent(token, consent_text="I agree", consent_version="v1")
            ents.contracts.sign(token, typed_name="S")
        assert _due(store, clock.now()) == []  # completed: nothing more to tell

    def test_the_chains_last_event_and_a_view_that_records_nothing(
        self, ents: Entitlements
    ) -> None:
        from entitlements.domain.contracts.contract import SignerSpec, SignerStatus

        ents.subscriptions.start_trial(ACME, "growth", actor=STAFF)
        contract = ents.contracts.issue(
            ACME, title="MSA", body="Terms.", actor=STAFF, signers=[SignerSpec("Ada", "a@x.test")]
        )
        token = ents.contracts.send(ACME, contract.id, actor=STAFF)["s1"]
        before = list(ents.contracts.events(ACME, contract.id))
        view = ents.contracts.view(token)
        assert view.signer_status is SignerStatus.SENT
        assert list(ents.contracts.events(ACME, contract.id)) == before, "a view records nothing"
        with ents.runtime.read(ACME.tenant) as uow:
            assert uow.contracts.last_event(contract.id) == before[-1]
        assert ents.contracts.open(token).signer_status is SignerStatus.VIEWED
        after = list(ents.contracts.events(ACME, contract.id))
        assert after[:-1] == before
        assert after[-1].type.value == "viewed"
        with ents.runtime.read(ACME.tenant) as uow:
            assert uow.contracts.last_event(contract.id) == after[-1]
        assert ents.contracts.verify(ACME, contract.id).ok

    def test_contract_tokens_are_found_across_tenants_only_by_their_hash(
        self, store: Store
    ) -> None:
        from entitlements.domain.contracts.contract import Contract, Signer, Terms

        owner = Owner("app", "1", tenant="tenant-a")
        contract = Contract(
            "c-1",
            owner,
            "T",
            "Body",
            Terms(),
            (Signer("s1", "n" * 64, "e" * 64, "", 1, token_hash="h" * 64),),
            False,
            START,
            START + timedelta(days=1),
        ).with_hashes()
        with store.unit_of_work("tenant-a") as uow:
            uow.contracts.add(contract)
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert uow.contracts.locate("h" * 64) == ("tenant-a", "c-1", "s1")
            assert uow.contracts.locate("x" * 64) is None
            with pytest.raises(NotFound):
                uow.contracts.get("c-1")
        with store.unit_of_work("tenant-a") as uow:
            assert uow.contracts.expired(START + timedelta(days=1)) == [
                attrs.evolve(contract, revision=1)
            ]

    # -- payment provider --------------------------------------------------------------

    def test_provider_events_and_links(self, store: Store) -> None:
        from entitlements.domain.billing import ProviderLink

        link = ProviderLink("sub_1", ACME, START, "cs_1", "growth", "alice", "s-1")
        with store.unit_of_work(None) as uow:
            assert not uow.provider.seen("evt_1")
            uow.provider.mark_seen("evt_1", START)
            uow.provider.mark_seen("evt_1", START)
            assert uow.provider.seen("evt_1")
            assert uow.provider.link("sub_1") is None
            uow.provider.put_link(link)
            uow.provider.put_link(attrs.evolve(link, last_applied_at=START + timedelta(seconds=1)))
            assert uow.provider.link("sub_1") == attrs.evolve(
                link, last_applied_at=START + timedelta(seconds=1)
            )
            assert uow.provider.link_for_checkout("cs_1") == uow.provider.link("sub_1")
            uow.commit()
        with store.unit_of_work("tenant-b") as uow:
            assert not uow.provider.seen("evt_1")
            assert uow.provider.link("sub_1") is None

    def test_billing_through_a_provider(self, store: Store, clock: ManualClock) -> None:
        from entitlements.domain.billing import AssignmentKind
        from entitlements.testing.fakes import FakePaymentProvider

        provider = FakePaymentProvider(clock)
        ents = Entitlements(store, clock=clock, payment_provider=provider)
        for plan in CATALOG:
            ents.plans.define(plan, actor=STAFF)
        checkout = ents.billing.assign_plan(ACME, "growth", actor=STAFF)
        assert checkout.kind is AssignmentKind.CHECKOUT
        assert checkout.checkout is not None
        state = provider.complete_checkout(checkout.checkout.id)
        provider.fail_payment(state.external_id)
        provider.pay(state.external_id)
        events = provider.take_events()
        outcomes = [
            ents.billing.apply_provider_event(e).outcome
            for e in [events[0], events[2], events[1], events[0]]
        ]
        assert outcomes == ["applied", "applied", "stale", "duplicate"]
        sub = ents.subscriptions.get(ACME)
        assert (sub.status, sub.plan_key, sub.external_id) == (
            SubscriptionStatus.ACTIVE,
            "growth",
            state.external_id,
        )
        assert ents.billing.assign_plan(ACME, "free", actor=STAFF).kind is AssignmentKind.DIRECT
        assert ents.subscriptions.get(ACME).plan_key == "free"

    # -- terms revisions and the change feed -----------------------------------------

    def test_terms_revisions_move_once_per_unit_of_work_and_only_up(self, store: Store) -> None:
        with store.unit_of_work(None) as uow:
            assert uow.revisions.current(ACME) == 0
            assert uow.revisions.lock(ACME) == 0
        seen = []
        for _ in range(3):
            with store.unit_of_work(None) as uow:
                first = uow.revisions.bump(ACME)
                assert uow.revisions.bump(ACME) == first
                uow.commit()
            seen.append(first)
        assert seen == sorted(set(seen))
        with store.unit_of_work(None) as uow:
            assert uow.revisions.current(ACME) == seen[-1]
            assert uow.revisions.current(GLOBEX) == 0
        _rolled_back(store, lambda uow: uow.revisions.bump(ACME))
        with store.unit_of_work(None) as uow:
            assert uow.revisions.current(ACME) == seen[-1]
            assert uow.revisions.bump(ACME) > seen[-1]

    def test_a_bump_can_stamp_the_counters_after_a_read(self, store: Store) -> None:
        """``bump(stamp=False)`` then ``stamp(since)`` leaves the counters as
        ``bump(since)`` would: consumptions at the old revision are refused from then on,
        in the periods stamped."""
        later = START + timedelta(days=31)
        with store.unit_of_work(None) as uow:
            revision = uow.revisions.lock(ACME)  # counters are created under the lock
            for period in (START, later):
                uow.usage.ensure(ACME, "api_calls", period, revision)
            uow.commit()
        with store.unit_of_work(None) as uow:
            revision = uow.revisions.bump(ACME, stamp=False)
            uow.revisions.stamp(ACME, later)
            uow.commit()
        with store.unit_of_work(None) as uow:
            assert (
                uow.usage.add(CounterAddition(ACME, "api_calls", later, used=1, revision=0)) is None
            )
            assert (
                uow.usage.add(CounterAddition(ACME, "api_calls", later, used=1, revision=revision))
                is not None
            )
            assert (
                uow.usage.add(CounterAddition(ACME, "api_calls", START, used=1, revision=0))
                is not None
            )

    def test_many_owners_are_bumped_and_stamped_at_once(self, store: Store) -> None:
        """``bump_many`` moves each owner's revision as ``bump`` would (once per unit of
        work), ``stamp_many`` refuses consumptions at the old revisions from then on."""
        later = START + timedelta(days=31)
        new = Owner("organization", "new")
        with store.unit_of_work(None) as uow:
            for owner in (ACME, GLOBEX):
                revision = uow.revisions.lock(owner)
                uow.usage.ensure(owner, "api_calls", later, revision)
            uow.commit()
        with store.unit_of_work(None) as uow:
            before = [uow.revisions.current(o) for o in (ACME, GLOBEX, new)]
            bumped = uow.revisions.bump_many([ACME, GLOBEX, new])
            assert list(bumped) == [ACME, GLOBEX, new]
            assert min(bumped[ACME] - before[0], bumped[GLOBEX] - before[1]) > 0
            assert bumped[new] > before[2]
            assert uow.revisions.bump_many([GLOBEX, ACME]) == {
                GLOBEX: bumped[GLOBEX],
                ACME: bumped[ACME],
            }
            assert uow.revisions.bump(new) == bumped[new]
            uow.revisions.stamp_many({ACME: later, GLOBEX: later, new: later})
            uow.commit()
        for owner in (ACME, GLOBEX):
            self._stamped(store, owner, later, bumped[owner])
        assert {c.owner for c in store.read_changes(0).changes} >= {ACME, GLOBEX, new}

    @staticmethod
    def _stamped(store: Store, owner: Owner, period: datetime, revision: int) -> None:
        """The owner's counter of ``period`` takes consumptions at ``revision`` only."""
        with store.unit_of_work(None) as uow:
            assert uow.revisions.current(owner) == revision
            assert (
                uow.usage.add(CounterAddition(owner, "api_calls", period, used=1, revision=0))
                is None
            )
            assert uow.usage.add(
                CounterAddition(owner, "api_calls", period, used=1, revision=revision)
            )

    def test_many_owners_subscriptions_are_read_at_once_as_one_at_a_time(
        self, ents: Entitlements, store: Store
    ) -> None:
        for plan in ("free", "growth"):  # ACME's first, ended, then its current one
            ents.subscriptions.subscribe(ACME, plan, actor=STAFF)
            if plan == "free":
                ents.subscriptions.cancel(ACME, actor=STAFF)
        ents.subscriptions.start_trial(GLOBEX, "growth", actor=STAFF)
        nobody = Owner("organization", "nobody")
        with store.unit_of_work(None) as uow:
            found = uow.subscriptions.current_many([ACME, GLOBEX, nobody])
            assert found == {o: uow.subscriptions.current(o) for o in (ACME, GLOBEX)}
            assert found[ACME].plan_key == "growth"
            uow.revisions.bump_many([ACME, GLOBEX, nobody])  # under their terms locks
            wanted = [("growth", 1), ("free", 1)]
            assert uow.subscriptions.current_many([GLOBEX, ACME], with_plans=wanted) == found
            assert uow.plans.get("free", 1).key == "free"
        elsewhere = Owner("organization", ACME.id, tenant="tenant-b")
        with store.unit_of_work("tenant-b") as uow:
            assert uow.subscriptions.current_many([elsewhere]) == {}

    def test_owners_with_open_provider_commands_are_found_at_once(self, store: Store) -> None:
        def command(owner: Owner, status: CommandStatus) -> ProviderCommand:
            return ProviderCommand(
                id=f"c-{owner.id}",
                owner=owner,
                kind=CommandKind.CANCEL,
                payload={},
                idempotency_key=f"k-{owner.id}",
                created_at=START,
                status=status,
            )

        with store.unit_of_work(None) as uow:
            uow.provider.add_command(command(ACME, CommandStatus.PENDING))
            uow.provider.add_command(command(GLOBEX, CommandStatus.SENT))
            uow.commit()
        nobody = Owner("organization", "nobody")
        with store.unit_of_work(None) as uow:
            assert uow.provider.owners_with_open_commands([ACME, GLOBEX, nobody]) == {ACME}
            assert uow.provider.owners_with_open_commands([]) == set()
        elsewhere = Owner("organization", ACME.id, tenant="tenant-b")
        with store.unit_of_work("tenant-b") as uow:
            assert uow.provider.owners_with_open_commands([elsewhere]) == set()

    def test_each_write_appends_its_feed_entries_in_its_own_transaction(self, store: Store) -> None:
        assert store.feed_head() == 0
        assert store.read_changes(0) == FeedPage((), 0, 0)
        with store.unit_of_work(None) as uow:
            uow.revisions.bump(ACME)
            uow.feed.note(ACME, ChangeKind.USAGE)  # a terms change already drops usage
            uow.feed.note(GLOBEX, ChangeKind.USAGE)
            assert store.feed_head() == 0  # nothing before commit
            uow.commit()
            first = uow.committed_revision
        assert first is not None
        assert first == store.feed_head()
        page = store.read_changes(0)
        assert {(c.kind, c.owner) for c in page.changes} == {
            (ChangeKind.TERMS, ACME),
            (ChangeKind.USAGE, GLOBEX),
        }
        assert [c.seq for c in page.changes] == sorted({c.seq for c in page.changes})
        assert page.head == first == max(c.seq for c in page.changes)

        _rolled_back(
            store, lambda uow: (uow.revisions.bump(GLOBEX), uow.feed.note(None, ChangeKind.CATALOG))
        )
        assert store.feed_head() == first
        assert store.read_changes(first).changes == ()

        second = _noted(store, None, ChangeKind.CATALOG)
        assert second > first
        later = store.read_changes(first)
        assert [(c.seq, c.kind, c.owner) for c in later.changes] == [
            (second, ChangeKind.CATALOG, None)
        ]
        with store.unit_of_work(None) as uow:
            assert uow.revisions.current(ACME) == 1
            uow.commit()
            assert uow.committed_revision is None  # a read changes nothing a cache holds

    def test_feed_reads_after_a_position_and_numbers_asked_again(self, store: Store) -> None:
        seqs = [_noted(store, owner, ChangeKind.USAGE) for owner in (ACME, GLOBEX, ACME)]
        assert seqs == sorted(set(seqs))
        assert [c.seq for c in store.read_changes(seqs[0]).changes] == seqs[1:]
        assert store.read_changes(seqs[-1]) == FeedPage((), 0, seqs[-1])
        again = store.read_changes(seqs[-1], (seqs[0],))
        assert [(c.seq, c.owner) for c in again.changes] == [(seqs[0], ACME)]
        assert again.head == seqs[-1]
        with store.unit_of_work(None) as uow:
            assert [c.seq for c in uow.feed.read(0, limit=2).changes] == seqs[:2]
            assert uow.feed.head() == seqs[-1]

    def test_feed_tenants_and_owners_round_trip(self, store: Store) -> None:
        other = Owner("app", "1", tenant="tenant-a")
        with store.unit_of_work("tenant-a") as uow:
            uow.revisions.bump(other)
            uow.commit()
        with store.unit_of_work("tenant-a") as uow:
            assert uow.revisions.current(other) == 1
        with store.unit_of_work(None) as uow:
            assert uow.revisions.current(Owner("app", "1")) == 0
        assert [(c.kind, c.owner) for c in store.read_changes(0).changes] == [
            (ChangeKind.TERMS, other)
        ]

    def test_pruning_drops_old_entries_and_tells_followers(self, store: Store) -> None:
        seqs = [_noted(store, owner, ChangeKind.USAGE) for owner in (ACME, GLOBEX)]
        old, newest = seqs
        with store.unit_of_work(None) as uow:  # nothing that old: nothing goes
            assert uow.feed.prune(datetime.now(UTC) - timedelta(days=1)) == 0
            uow.commit()
        assert _rolled_back(store, lambda uow: uow.feed.prune(datetime.now(UTC) + _SECOND)) == 1
        assert [c.seq for c in store.read_changes(0).changes] == seqs
        assert store.read_changes(0).pruned_through == 0
        with store.unit_of_work(None) as uow:
            assert uow.feed.prune(datetime.now(UTC) + timedelta(seconds=1)) == 1
            uow.commit()
        page = store.read_changes(0)
        assert ([c.seq for c in page.changes], page.pruned_through) == ([newest], old)
        assert store.feed_head() == newest  # the newest entry is kept: numbers never repeat
        newer = _noted(store, GLOBEX, ChangeKind.TERMS)
        assert newer > newest
        page = store.read_changes(newest)
        assert ([c.seq for c in page.changes], page.pruned_through) == ([newer], old)
        with store.unit_of_work(None) as uow:  # pruning never moves the mark back
            assert uow.feed.prune(datetime.now(UTC) - timedelta(days=1)) == 0
            uow.commit()
        assert store.read_changes(newest).pruned_through == old

    def test_service_writes_expose_their_revision_and_the_sweep_prunes(
        self, ents: Entitlements, store: Store, clock: ManualClock
    ) -> None:
        ents.subscriptions.subscribe(ACME, "growth", actor=STAFF)
        subscribed = ents.last_revision
        assert subscribed is not None
        assert subscribed == store.feed_head()
        assert (ChangeKind.TERMS, ACME) in {
            (c.kind, c.owner) for c in store.read_changes(0).changes
        }
        ents.usage.consume(ACME, "api_calls", 3)
        recorded = ents.last_revision
        assert recorded is not None
        assert recorded > subscribed
        assert [(c.kind, c.owner) for c in store.read_changes(subscribed).changes] == [
            (ChangeKind.USAGE, ACME)
        ]
        before = self.dump(store)
        with pytest.raises(UnknownPlan):
            ents.subscriptions.change_plan(ACME, "nope", actor=STAFF)
        assert self.dump(store) == before
        assert ents.last_revision == recorded

        kept = ents.process_due()
        assert kept.feed_entries_pruned == 0
        assert store.feed_head() == recorded
        seqs = [c.seq for c in store.read_changes(0).changes]
        assert len(seqs) >= 5  # three plans, the subscription, the consumption
        time.sleep(0.002)  # entries are stamped by the wall clock at commit
        swept = ents.process_due(feed_retention=timedelta(0))
        assert swept.feed_entries_pruned == len(seqs) - 1
        page = store.read_changes(0)
        assert ([c.seq for c in page.changes], page.pruned_through) == ([recorded], seqs[-2])
        with pytest.raises(InvalidInput):
            ents.process_due(feed_retention=timedelta(seconds=-1))


_OTHER = Owner("organization", "other")


def _delivered_then_undone(uow: UnitOfWork, notification_id: str, worker: str) -> None:
    """Mark a notification delivered in a savepoint that then fails."""
    with uow.savepoint():
        assert uow.notifications.delivered([notification_id], worker, START) == 1
        raise LookupError


def _note(owner: Owner, key: str) -> Notification:
    return Notification(
        id=f"n-{owner.id}-{key}",
        owner=owner,
        kind=NotificationKind.USAGE_THRESHOLD,
        key=key,
        facts={"metric": "api", "threshold": 80},
        about=START,
        created_at=START,
    )
