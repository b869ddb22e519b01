"""Answers follow time by themselves: every time-driven change is reflected at ``now``,
warm and cold, on every store, whether or not the sweep ran."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import (
    AddOn,
    Entitlements,
    EntitlementsError,
    Event,
    IllegalTransition,
    Limit,
    LimitExceeded,
    LimitKind,
    ManualClock,
    Owner,
    Plan,
    SubscriptionStatus,
)
from entitlements.testing.contract import CATALOG, START

ACME = Owner("organization", "acme")


@pytest.fixture(params=STORE_KINDS)
def setup(request, make_store):
    store = make_store(request.param)
    clock = ManualClock(START)
    ents = Entitlements(store, clock=clock)
    for plan in CATALOG:
        ents.plans.define(plan, actor="staff")

    def cold() -> Entitlements:
        return Entitlements(store, clock=clock)

    return ents, clock, cold


def test_a_trial_that_ended_grants_nothing_warm_cold_or_in_claims(setup):
    ents, clock, cold = setup
    ents.subscriptions.start_trial(ACME, "growth", actor="staff", trial_days=14)
    assert ents.allows(ACME, "export")
    assert ents.claims(ACME).limits is not None
    clock.advance(days=14, seconds=1)
    assert not ents.allows(ACME, "export"), "warm"
    assert not cold().allows(ACME, "export"), "cold"
    assert ents.snapshot(ACME).status is SubscriptionStatus.EXPIRED
    claims = ents.claims(ACME)
    assert claims.plan is None
    assert claims.limits is None
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.EXPIRED, "read follows time"
    assert ents.subscriptions.history(ACME)[-1].status is SubscriptionStatus.EXPIRED
    assert [c.event for c in ents.process_due().changes] == [Event.END_TRIAL], "stored by sweep"
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.EXPIRED


def test_reads_in_an_atomic_block_answer_for_the_blocks_instant(setup):
    ents, clock, _ = setup
    ents.subscriptions.start_trial(ACME, "growth", actor="staff", trial_days=7)
    clock.advance(days=9)
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.EXPIRED
    with ents.atomic(now=START + timedelta(days=4)):
        assert ents.subscriptions.get(ACME).status is SubscriptionStatus.TRIALING
        assert ents.subscriptions.history(ACME)[-1].status is SubscriptionStatus.TRIALING


def test_the_owner_search_follows_time_before_the_sweep(setup):
    ents, clock, _ = setup
    ents.subscriptions.start_trial(ACME, "growth", actor="staff", trial_days=7)
    other = Owner("organization", "globex")
    ents.subscriptions.subscribe(other, "growth", actor="staff")
    clock.advance(days=8)
    expired = ents.subscriptions.search(statuses=["expired"])
    assert [s.owner for s in expired] == [ACME], "the stored row still says trialing"
    assert ents.subscriptions.search(statuses=["trialing"]) == []
    everyone = {s.owner: s.status for s in ents.subscriptions.search()}
    assert everyone == {ACME: SubscriptionStatus.EXPIRED, other: SubscriptionStatus.ACTIVE}


def test_a_cancellation_at_period_end_takes_effect_at_the_period_end(setup):
    ents, clock, cold = setup
    sub = ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.subscriptions.cancel(ACME, actor="staff", at_period_end=True)
    assert ents.allows(ACME, "export")
    clock.set(sub.current_period.end - timedelta(microseconds=1))
    assert ents.allows(ACME, "export")
    clock.set(sub.current_period.end)
    assert not ents.allows(ACME, "export")
    assert ents.snapshot(ACME).status is SubscriptionStatus.CANCELED
    assert not cold().allows(ACME, "export")


def test_an_expiry_date_ends_access_at_that_instant(setup):
    ents, clock, _ = setup
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.subscriptions.amend(ACME, actor="staff", expires_at=START + timedelta(days=3))
    assert ents.limit(ACME, "projects") == 20
    clock.advance(days=3)
    assert ents.limit(ACME, "projects", default=0) == 0
    assert ents.snapshot(ACME).status is SubscriptionStatus.EXPIRED


def test_past_due_grace_ends_write_access_on_the_warm_path(setup):
    ents, clock, _ = setup
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.subscriptions.mark_past_due(ACME, actor="billing")
    assert ents.allows(ACME, "export", "create")
    clock.advance(days=7, seconds=1)
    assert not ents.allows(ACME, "export", "create")
    assert ents.allows(ACME, "export", "read")


def test_an_override_stops_at_its_expiry_without_a_sweep(setup):
    ents, clock, _ = setup
    ents.subscriptions.subscribe(ACME, "free", actor="staff")
    ents.overrides.set_feature(
        ACME,
        "sso",
        enabled=True,
        actor="staff",
        reason="pilot",
        expires_at=START + timedelta(hours=2),
    )
    assert ents.allows(ACME, "sso")
    clock.advance(hours=2)
    assert not ents.allows(ACME, "sso")


def test_an_add_on_ends_by_itself(setup):
    ents, clock, cold = setup
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ends = START + timedelta(days=10)
    ents.subscriptions.add_addon(ACME, AddOn("bulk", {"projects": 30}, ends_at=ends), actor="staff")
    assert ents.limit(ACME, "projects") == 30, "combine max"
    clock.set(ends)
    assert ents.limit(ACME, "projects") == 20
    assert cold().limit(ACME, "projects") == 20
    report = ents.process_due()
    assert [c.event.value for c in report.changes] == ["change_addons"]
    assert ents.subscriptions.get(ACME).addons == ()


METERED = Plan(
    "metered",
    "Metered",
    limits={"api_calls": Limit(100, "calls", kind=LimitKind.METERED)},
    status="active",
)


def test_usage_after_the_period_ended_counts_in_the_new_period(setup):
    ents, clock, _ = setup
    ents.plans.define(METERED, actor="staff")
    ents.subscriptions.subscribe(ACME, "metered", actor="staff")
    first = ents.usage.consume(ACME, "api_calls", 100)
    with pytest.raises(LimitExceeded):
        ents.usage.consume(ACME, "api_calls", 1)
    clock.set(ents.snapshot(ACME).usage_period.end)
    again = ents.usage.consume(ACME, "api_calls", 40)
    assert again.period_start > first.period_start
    assert again.used == 40
    assert ents.usage.total(ACME, "api_calls", first.period_start) == 100, "unchanged"
    assert ents.usage.check(ACME, "api_calls", 60).allowed
    assert not ents.usage.check(ACME, "api_calls", 61).allowed


def test_an_expired_reservation_stops_counting_at_once(setup):
    ents, clock, _ = setup
    ents.plans.define(METERED, actor="staff")
    ents.subscriptions.subscribe(ACME, "metered", actor="staff")
    held = ents.usage.reserve(ACME, "api_calls", 70, ttl=timedelta(hours=1))
    assert not ents.usage.check(ACME, "api_calls", 50).allowed
    clock.advance(hours=1)
    assert ents.usage.check(ACME, "api_calls", 50).allowed
    assert ents.usage.counter(ACME, "api_calls").reserved == 0
    assert ents.usage.consume(ACME, "api_calls", 100).used == 100, "no sweep needed"
    expiries = [e for e in ents.audit.for_owner(ACME) if e.action == "usage.reservation_expired"]
    assert len(expiries) == 1, "the write that needed the units recorded the expiry"
    assert ents.process_due().expired_reservations == ()
    with pytest.raises(Exception, match="expired"):
        ents.usage.commit(ACME, held.id)


def test_a_write_acts_on_the_subscription_as_time_made_it(setup):
    ents, clock, _ = setup
    ents.subscriptions.start_trial(ACME, "growth", actor="staff", trial_days=14)
    clock.advance(days=15)
    with pytest.raises(IllegalTransition, match="expired"):
        ents.subscriptions.change_seats(ACME, 3, actor="staff")
    trail = [e.action for e in ents.audit.for_owner(ACME)]
    assert trail[-1] == "subscription.start_trial", "the refused call left nothing behind"
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    trail = [e.action for e in ents.audit.for_owner(ACME)]
    assert trail[-2:] == ["subscription.end_trial", "subscription.subscribe"]


# -- the property -------------------------------------------------------------------------

OWNERS = [Owner("organization", "a"), Owner("organization", "b"), Owner("app", "c")]
FEATURES = ("premium", "export", "sso", "beta")
LIMITS = ("seats", "projects", "api_calls")

step = st.one_of(
    st.tuples(
        st.just("trial"),
        st.sampled_from(OWNERS),
        st.sampled_from(["growth", "free"]),
        st.integers(1, 40),
    ),
    st.tuples(st.just("subscribe"), st.sampled_from(OWNERS), st.sampled_from(["growth", "free"])),
    st.tuples(st.just("cancel_at_end"), st.sampled_from(OWNERS)),
    st.tuples(st.just("past_due"), st.sampled_from(OWNERS)),
    st.tuples(st.just("suspend"), st.sampled_from(OWNERS)),
    st.tuples(st.just("resume"), st.sampled_from(OWNERS)),
    st.tuples(st.just("expire_in"), st.sampled_from(OWNERS), st.integers(1, 60)),
    st.tuples(
        st.just("override"), st.sampled_from(OWNERS), st.sampled_from(FEATURES), st.integers(1, 90)
    ),
    st.tuples(st.just("addon"), st.sampled_from(OWNERS), st.integers(1, 60)),
    st.tuples(st.just("wait"), st.integers(0, 50 * 24)),
)


def apply(ents: Entitlements, clock: ManualClock, op: tuple) -> None:
    kind, *args = op
    subs = ents.subscriptions
    try:
        if kind == "trial":
            subs.start_trial(args[0], args[1], actor="staff", trial_days=args[2])
        elif kind == "subscribe":
            subs.subscribe(args[0], args[1], actor="staff")
        elif kind == "cancel_at_end":
            subs.cancel(args[0], actor="staff", at_period_end=True)
        elif kind == "past_due":
            subs.mark_past_due(args[0], actor="billing")
        elif kind == "suspend":
            subs.suspend(args[0], actor="staff")
        elif kind == "resume":
            subs.resume(args[0], actor="staff")
        elif kind == "expire_in":
            subs.amend(args[0], actor="staff", expires_at=clock.now() + timedelta(days=args[1]))
        elif kind == "override":
            ents.overrides.set_feature(
                args[0],
                args[1],
                enabled=True,
                actor="staff",
                reason="r",
                expires_at=clock.now() + timedelta(days=args[2]),
            )
        elif kind == "addon":
            subs.add_addon(
                args[0],
                AddOn(
                    "extra",
                    {"projects": 5},
                    {"beta": True},
                    ends_at=clock.now() + timedelta(days=args[1]),
                ),
                actor="staff",
            )
        elif kind == "wait":
            clock.advance(hours=args[0])
    except EntitlementsError:  # refused by the rules: nothing changed
        pass


def answers(ents: Entitlements, owner: Owner) -> tuple:
    snap = ents.snapshot(owner)
    return (
        snap.status,
        snap.plan_key,
        tuple(ents.allows(owner, f) for f in FEATURES),
        tuple(ents.allows(owner, f, "create") for f in FEATURES),
        tuple(ents.limit(owner, name, default=0) for name in LIMITS),
        snap.usage_period,
    )


def check_answers_follow_time(store, ops, later_hours) -> None:
    clock = ManualClock(START)
    ents = Entitlements(store, clock=clock)
    for plan in CATALOG:
        ents.plans.define(plan, actor="staff")
    for op in ops:
        apply(ents, clock, op)
    warm = {owner: answers(ents, owner) for owner in OWNERS}  # fills the cache
    assert warm
    clock.advance(hours=later_hours)
    at_t = {owner: answers(ents, owner) for owner in OWNERS}
    cold = Entitlements(store, clock=clock)
    assert {owner: answers(cold, owner) for owner in OWNERS} == at_t, "warm equals cold"
    ents.process_due()
    swept = Entitlements(store, clock=clock)
    assert {owner: answers(swept, owner) for owner in OWNERS} == at_t, "the sweep changes no answer"
    assert {owner: answers(ents, owner) for owner in OWNERS} == at_t


CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(
    max_examples=100 if CI else 15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(step, max_size=20), later=st.integers(0, 120 * 24))
def test_answers_at_any_time_do_not_depend_on_the_sweep(kind, make_store, ops, later):
    check_answers_follow_time(make_store(kind), ops, later)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
@settings(
    max_examples=30 if CI else 6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(step, max_size=15), later=st.integers(0, 120 * 24))
def test_answers_at_any_time_do_not_depend_on_the_sweep_on_servers(kind, make_store, ops, later):
    check_answers_follow_time(make_store(kind), ops, later)


def test_a_plan_change_does_not_count_reservations_that_ran_out(setup):
    ents, clock, _ = setup
    for key, cap in (("big", 10), ("small", 5)):
        ents.plans.define(
            Plan(key, key, limits={"jobs": Limit(cap, kind=LimitKind.METERED)}, status="active"),
            actor="staff",
        )
    ents.subscriptions.subscribe(ACME, "big", actor="staff")
    ents.usage.reserve(ACME, "jobs", 8, ttl=timedelta(minutes=5))
    clock.advance(minutes=6)  # no sweep: the reservation ran out all the same
    change = ents.subscriptions.change_plan(ACME, "small", actor="staff")
    assert change.over_quota == ()
    assert ents.subscriptions.get(ACME).plan_key == "small"
