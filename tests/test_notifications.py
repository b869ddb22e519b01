"""Notifications (issue 25): alert thresholds crossed once per period, the outbox rows
written with the change that causes them, time-based ones written once by the sweep,
and delivery — in order per owner, backed off, parked, retried, purged — on every store."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitlements import (
    AddOn,
    Delivery,
    Entitlements,
    InvalidInput,
    Limit,
    LimitKind,
    ManualClock,
    NotificationKind,
    NotificationSettings,
    Owner,
    Plan,
    UsageEvent,
)
from entitlements.catalog import Catalog, dump_catalog, loads_catalog
from entitlements.domain.alerts import Thresholds, crossed, mark
from entitlements.domain.notification import MAX_ATTEMPTS

KINDS = ["memory", "sqlite", "postgres", "mysql"]
START = datetime(2026, 3, 1, 12, tzinfo=UTC)
THRESHOLDS = (NotificationKind.USAGE_THRESHOLD, NotificationKind.LIMIT_REACHED)

SMALL = Plan(
    "small",
    "Small",
    limits={
        "api": Limit(10, "calls", kind=LimitKind.METERED, enforcement="soft", alerts=(50, 100)),
        "capped": Limit(10, kind=LimitKind.METERED, alerts=(80, 100)),
        "projects": Limit(4, enforcement="soft", alerts=(50, 100)),
        "seats": Limit(2, kind=LimitKind.SEATS, alerts=(100,)),
        "plain": Limit(10, kind=LimitKind.METERED),
    },
    status="active",
    trial_days=14,
)
LARGE = Plan(
    "large",
    "Large",
    limits={
        "api": Limit(20, "calls", kind=LimitKind.METERED, enforcement="soft", alerts=(50, 100)),
        "capped": Limit(20, kind=LimitKind.METERED, alerts=(80, 100)),
        "projects": Limit(8, enforcement="soft", alerts=(50, 100)),
        "seats": Limit(4, kind=LimitKind.SEATS, alerts=(100,)),
        "plain": Limit(20, kind=LimitKind.METERED),
    },
    status="active",
)


def app(store, clock=None, **kwargs):
    clock = clock or ManualClock(START)
    ents = Entitlements(store, clock=clock, **kwargs)
    for plan in (SMALL, LARGE):
        if not ents.plans.list() or plan.key not in {p.key for p in ents.plans.list()}:
            ents.plans.define(plan, actor="staff")
    return ents, clock


def owner() -> Owner:
    return Owner("organization", uuid.uuid4().hex[:12])


def thresholds_of(ents, who):
    return sorted(
        (n.facts["metric"], n.facts["threshold"], n.facts["limit"], n.facts["period_start"])
        for n in ents.notifications.list(who, limit=1000)
        if "threshold" in n.facts
    )


# -- the rule ---------------------------------------------------------------------------


def test_landing_exactly_on_the_mark_crosses_and_going_down_crosses_nothing():
    assert mark(80, 1000) == 800
    assert mark(80, 7) == 6
    assert crossed((80, 100), 1000, 799, 800) == (80,)
    assert crossed((80, 100), 1000, 700, 1000) == (80, 100)
    assert crossed((80, 100), 1000, 800, 900) == ()
    assert crossed((80, 100), 1000, 900, 100) == ()
    assert crossed((80,), None, 0, 10**9) == ()
    assert crossed((80,), 0, 0, 5) == ()


@pytest.mark.parametrize(
    "alerts", ["80", [0], [1001], [80.5], [True], {"a": 1}, 80, [None]], ids=repr
)
def test_bad_thresholds_are_refused_clearly(alerts):
    with pytest.raises(InvalidInput) as caught:
        Limit(10, alerts=alerts)
    assert caught.value.field == "limit.alerts"


def test_thresholds_are_terms_kept_sorted_and_versioned_with_the_plan():
    assert Limit(10, alerts=[100, 80, 80]).alerts == (80, 100)
    assert Limit(10).alerts == ()
    revised = SMALL.limits["api"].__class__(10, kind="metered", alerts=(90,))
    assert revised != SMALL.limits["api"]


def test_catalogs_carry_thresholds_both_ways():
    text = dump_catalog(Catalog((SMALL,)))
    assert "alerts" in text
    assert loads_catalog(text).plan("small").limits["api"].alerts == (50, 100)
    assert "alerts" not in dump_catalog(
        Catalog((Plan("p", "P", limits={"x": Limit(1)}, status="active"),))
    )


@pytest.mark.parametrize("kind", KINDS)
def test_stores_keep_thresholds_with_the_plan_version(kind, make_store):
    ents, _ = app(make_store(kind))
    try:
        assert ents.plans.get("small").limits["api"].alerts == (50, 100)
        assert ents.plans.get("small").limits["plain"].alerts == ()
    finally:
        ents.close()


# -- crossings on every store -------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_threshold_notifies_once_a_period_and_a_raised_limit_rearms(kind, make_store):
    ents, clock = app(make_store(kind))
    acme = owner()
    try:
        ents.subscriptions.subscribe(acme, "small", actor="staff")
        ents.usage.consume(acme, "api", 4)
        assert thresholds_of(ents, acme) == []
        ents.usage.consume(acme, "api", 1)  # exactly on 50%
        ents.usage.consume(acme, "api", 1)
        ents.usage.consume(acme, "api", 6)  # past 100% (soft)
        ents.usage.consume(acme, "plain", 10)  # no thresholds: nothing
        period = ents.snapshot(acme).usage_period.start.isoformat()
        assert thresholds_of(ents, acme) == [("api", 50, 10, period), ("api", 100, 10, period)]
        # the gauge: up, down, up again under the same limit notifies once
        ents.usage.set_gauge(acme, "projects", 2)
        ents.usage.decrease(acme, "projects", 2)
        ents.usage.set_gauge(acme, "projects", 3)
        assert [t for t in thresholds_of(ents, acme) if t[0] == "projects"] == [
            ("projects", 50, 4, period)
        ]
        # an override raises the limit: the marks move, and 50% of 40 is crossed anew
        ents.overrides.set_limit(acme, "projects", 40, actor="staff", reason="big customer")
        ents.usage.set_gauge(acme, "projects", 20)
        assert ("projects", 50, 40, period) in thresholds_of(ents, acme)
        # a new period: the metered counter starts again, and so do its thresholds
        clock.advance(timedelta(days=32))
        ents.usage.consume(acme, "api", 5)
        later = ents.snapshot(acme).usage_period.start.isoformat()
        assert ("api", 50, 10, later) in thresholds_of(ents, acme)
    finally:
        ents.close()


@pytest.mark.parametrize("kind", KINDS)
def test_every_way_of_counting_notifies(kind, make_store):
    ents, _ = app(make_store(kind))
    acme = owner()
    try:
        ents.subscriptions.subscribe(acme, "small", actor="staff")
        ents.usage.consume_many([UsageEvent(acme, "capped", 1) for _ in range(8)])
        held = ents.usage.reserve(acme, "capped", 2)
        ents.usage.commit(acme, held.id)
        ents.seats.assign(acme, "ann", actor="staff")
        ents.seats.assign(acme, "bob", actor="staff")
        kinds = sorted(n.kind.value for n in ents.notifications.list(acme))
        assert kinds == sorted(
            [
                NotificationKind.USAGE_THRESHOLD.value,  # capped 80%, in the batch
                NotificationKind.LIMIT_REACHED.value,  # capped 100% by the reservation
                NotificationKind.SEATS_FULL.value,
            ]
        )
    finally:
        ents.close()


@pytest.mark.parametrize("kind", KINDS)
def test_plan_changes_and_trials_notify(kind, make_store):
    ents, clock = app(make_store(kind), notification_settings=NotificationSettings((7, 3)))
    trial, paid = owner(), owner()
    try:
        ents.subscriptions.start_trial(trial, "small", actor="staff")
        ents.subscriptions.start_trial(paid, "small", actor="staff")
        ents.subscriptions.change_plan(paid, "large", actor="staff")
        ents.subscriptions.convert(paid, actor="staff")
        clock.advance(timedelta(days=8))
        assert ents.process_due().notifications_written == 1  # 7 days before the end
        clock.advance(timedelta(days=4))
        assert ents.process_due().notifications_written == 1  # 3 days before
        assert ents.process_due().notifications_written == 0  # run again: nothing new
        clock.advance(timedelta(days=3))
        ents.process_due()
        assert [n.kind for n in reversed(ents.notifications.list(trial))] == [
            NotificationKind.TRIAL_ENDING,
            NotificationKind.TRIAL_ENDING,
            NotificationKind.TRIAL_ENDED,
        ]
        assert [n.facts.get("days") for n in reversed(ents.notifications.list(trial))] == [
            7,
            3,
            None,
        ]
        assert {n.kind for n in ents.notifications.list(paid)} == {
            NotificationKind.PLAN_CHANGED,
            NotificationKind.TRIAL_CONVERTED,
        }
    finally:
        ents.close()


# -- the property ------------------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("consume"), st.integers(1, 9)),
        st.tuples(st.just("gauge"), st.integers(0, 12)),
        st.tuples(st.just("decrease"), st.integers(1, 4)),
        st.tuples(st.just("plan"), st.sampled_from(["small", "large"])),
        st.tuples(st.just("advance"), st.integers(1, 40)),
    ),
    max_size=14,
)


class Model:
    """The crossing rule, written out again: a threshold notifies when usage goes from
    below its mark to at or above it, once per (metric, threshold, period, limit)."""

    def __init__(self) -> None:
        self.fired: set[tuple[str, int, int, str]] = set()

    def change(self, metric: str, limit: int, alerts, before: int, after: int, period) -> None:
        for percent in alerts:
            at = math.ceil(percent * limit / 100)
            if before < at <= after:
                self.fired.add((metric, percent, limit, period))


def run_ops(ents, clock, ops) -> None:
    who = owner()
    model = Model()
    plan = "small"
    ents.subscriptions.subscribe(who, plan, actor="staff")
    for op, value in ops:
        snapshot = ents.snapshot(who)
        period = snapshot.usage_period.start.isoformat()
        terms = {p.key: p for p in (SMALL, LARGE)}[plan].limits
        if op == "consume":
            before = ents.usage.total(who, "api")
            ents.usage.consume(who, "api", value)
            model.change("api", terms["api"].value, (50, 100), before, before + value, period)
        elif op in ("gauge", "decrease"):
            before = ents.usage.total(who, "projects")
            if op == "decrease" and value > before:
                continue
            after = value if op == "gauge" else before - value
            if op == "gauge":
                ents.usage.set_gauge(who, "projects", value)
            else:
                ents.usage.decrease(who, "projects", value)
            model.change("projects", terms["projects"].value, (50, 100), before, after, period)
        elif op == "plan" and value != plan:
            ents.subscriptions.change_plan(who, value, actor="staff", if_over_quota="allow")
            plan = value
        elif op == "advance":
            clock.advance(timedelta(days=value))
    assert set(thresholds_of(ents, who)) == model.fired
    assert len(thresholds_of(ents, who)) == len(model.fired)  # never twice


@pytest.mark.parametrize("kind", KINDS)
def test_property_each_threshold_notifies_exactly_when_the_rule_says(kind, make_store):
    store = make_store(kind)
    ents, _ = app(store)
    ents.close()

    @settings(
        deadline=None,
        max_examples=40 if kind in ("memory", "sqlite") else 12,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(OPS)
    def check(ops):
        clock = ManualClock(START)
        ents = Entitlements(store, clock=clock)
        try:
            run_ops(ents, clock, ops)
        finally:
            ents.close()

    check()


# -- delivery --------------------------------------------------------------------------


def crossings(ents, owners, count=2):
    for who in owners:
        ents.subscriptions.subscribe(who, "small", actor="staff")
        for _ in range(count):
            ents.usage.consume(who, "api", 5)


@pytest.mark.parametrize("kind", KINDS)
def test_delivery_hands_each_owner_its_notifications_in_order_once(kind, make_store):
    ents, _ = app(make_store(kind))
    owners = [owner() for _ in range(3)]
    try:
        crossings(ents, owners)
        heard = []
        assert ents.notifications.deliver(heard.append, batch=2) == 6
        for who in owners:
            mine = [n.facts["threshold"] for n in heard if n.owner == who]
            assert mine == [50, 100]
        assert ents.notifications.deliver(heard.append) == 0
        assert {n.delivery for n in ents.notifications.list(limit=100)} == {Delivery.DELIVERED}
    finally:
        ents.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_handler_backs_off_keeps_order_parks_and_staff_retry(kind, make_store):
    ents, clock = app(make_store(kind))
    acme = owner()
    try:
        crossings(ents, [acme])
        calls = []

        def broken(n):
            calls.append(n.id)
            raise RuntimeError("smtp down")

        assert ents.notifications.deliver(broken) == 0
        assert len(calls) == 1  # the owner's second waits behind its first
        first = ents.notifications.get(calls[0])
        assert (first.attempts, first.delivery, first.last_error) == (
            1,
            Delivery.PENDING,
            "RuntimeError: smtp down",
        )
        assert ents.notifications.deliver(broken) == 0  # backing off: not tried again yet
        assert len(calls) == 1
        for _ in range(MAX_ATTEMPTS - 1):
            clock.advance(timedelta(hours=7))
            ents.notifications.deliver(broken)
        assert calls.count(first.id) == MAX_ATTEMPTS
        parked = ents.notifications.get(first.id)
        assert parked.delivery is Delivery.FAILED
        assert [n.id for n in ents.notifications.list(acme, failed=True)] == [first.id]
        # parked, it no longer holds the owner's later one back (tried in the same run)
        assert len(calls) == MAX_ATTEMPTS + 1
        clock.advance(timedelta(minutes=1))
        heard = []
        assert ents.notifications.deliver(heard.append) == 1
        assert heard[0].facts["threshold"] == 100
        again = ents.notifications.retry(first.id, actor="staff:ops")
        assert (again.attempts, again.delivery) == (0, Delivery.PENDING)
        assert ents.notifications.deliver(heard.append) == 1
        assert heard[1].id == first.id
        with pytest.raises(InvalidInput):
            ents.notifications.retry(first.id)  # delivered: nothing to retry
        assert ents.audit.for_owner(acme)[-1].action == "notification.retry"
    finally:
        ents.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_lapsed_claim_is_handed_over_again_with_the_same_id(kind, make_store):
    ents, clock = app(make_store(kind))
    acme = owner()
    try:
        crossings(ents, [acme], 1)
        with ents.atomic() as uow:  # a deliverer that claimed, then died
            claimed = uow.notifications.claim(
                "dead", clock.now(), clock.now() + timedelta(minutes=1)
            )
        assert len(claimed) == 1
        heard = []
        assert ents.notifications.deliver(heard.append) == 0  # the claim still holds
        clock.advance(timedelta(minutes=2))
        assert ents.notifications.deliver(heard.append) == 1
        assert heard[0].id == claimed[0].id
    finally:
        ents.close()


@pytest.mark.parametrize("kind", KINDS)
def test_the_sweep_forgets_delivered_notifications_after_retention(kind, make_store):
    ents, clock = app(
        make_store(kind), notification_settings=NotificationSettings(retention=timedelta(days=2))
    )
    acme = owner()
    try:
        crossings(ents, [acme])
        ents.notifications.deliver(lambda n: None)
        crossings(ents, [owner()], 1)  # not delivered: kept whatever its age
        clock.advance(timedelta(days=3))
        assert ents.process_due().notifications_purged == 2
        assert ents.notifications.list(acme) == []
        assert len(ents.notifications.list(limit=100)) == 1
    finally:
        ents.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.notifications.deliver(print, batch=0),
        lambda e: e.notifications.deliver(print, lease=timedelta(0)),
        lambda e: e.notifications.deliver("nope"),
        lambda e: e.notifications.list(limit=-1),
        lambda e: e.notifications.retry(""),
        lambda e: e.notifications.get(["x"]),
        lambda e: NotificationSettings(trial_ending_days=[0]),
        lambda e: NotificationSettings(retention=5),
    ],
)
def test_bad_input_to_notifications_is_refused_clearly(call, make_store):
    ents, _ = app(make_store("memory"))
    with pytest.raises(InvalidInput):
        call(ents)


@given(st.lists(st.integers(1, 200), min_size=1, max_size=5), st.integers(1, 10_000))
def test_crossed_says_exactly_which_marks_lie_in_the_step(alerts, limit):
    alerts = tuple(sorted(set(alerts)))
    for before in range(0, limit * 2 + 2, max(1, limit // 7)):
        for step in (0, 1, limit // 3 + 1):
            after = before + step
            got = crossed(alerts, limit, before, after)
            assert got == tuple(p for p in alerts if before < math.ceil(p * limit / 100) <= after)
            terms = Thresholds("api", limit, alerts, START)
            assert terms.crosses(before, after) == bool(got)


@pytest.mark.parametrize("kind", KINDS)
def test_add_ons_add_thresholds_and_an_override_sets_its_own(kind, make_store):
    ents, _ = app(make_store(kind))
    acme = owner()
    try:
        ents.subscriptions.subscribe(acme, "small", actor="staff")
        ents.subscriptions.add_addon(
            acme, AddOn("watch", alerts={"api": (20,), "projects": (25,)}), actor="staff"
        )
        assert ents.subscriptions.get(acme).addons[0].alerts["api"] == (20,)
        assert ents.snapshot(acme).limit_definition("api").alerts == (20, 50, 100)
        ents.usage.consume(acme, "api", 2)
        ents.overrides.set_limit(acme, "projects", 10, actor="staff", reason="pilot", alerts=(30,))
        assert ents.overrides.list(acme)[0].alerts == (30,)
        ents.usage.set_gauge(acme, "projects", 5)
        period = ents.snapshot(acme).usage_period.start.isoformat()
        assert thresholds_of(ents, acme) == [
            ("api", 20, 10, period),
            ("projects", 30, 10, period),
        ]
    finally:
        ents.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda: AddOn("x", alerts={"api": [0]}),
        lambda: AddOn("x", alerts=[80]),
        lambda: AddOn("x", alerts={"API!": [80]}),
    ],
)
def test_bad_add_on_thresholds_are_refused(make):
    with pytest.raises(InvalidInput):
        make()


def test_a_plan_change_that_clears_a_pending_change_notifies_once():
    from entitlements.adapters.memory import MemoryStore
    from entitlements.testing.contract import CATALOG
    from entitlements.testing.contract import START as BEGIN

    ents = Entitlements(MemoryStore(), clock=ManualClock(BEGIN), max_staleness=0)
    for plan in CATALOG:
        ents.plans.define(plan, actor="staff")
    owner = Owner("organization", "cleared")
    ents.subscriptions.start_trial(owner, "growth", actor="staff", trial_days=14)
    ents.subscriptions.schedule_change(owner, actor="staff", seats=3, at=BEGIN + timedelta(days=7))
    ents.subscriptions.convert(owner, actor="staff", plan_key="enterprise")
    kinds = [n.kind.value for n in ents.notifications.list(owner)]
    assert kinds.count("subscription.plan_changed") == 1
