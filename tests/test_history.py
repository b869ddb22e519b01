"""Answers for any past instant: ``resolve(owner, at)`` answers as ``resolve(owner)`` did
at ``at``, and ``subscriptions.at(owner, when)`` gives the subscription as it stood then,
on every store — also after the override was removed or the subscription ended."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import (
    AccessPolicy,
    Action,
    AddOn,
    Entitlements,
    EntitlementsError,
    InvalidInput,
    ManualClock,
    Owner,
    SubscriptionStatus,
)
from entitlements.domain.resolution import Snapshot
from entitlements.testing.contract import CATALOG, START

ACME = Owner("organization", "acme")
OWNERS = [ACME, Owner("app", "1", tenant="t1")]
PLANS = ["free", "growth", "enterprise"]
FEATURES = ["premium", "export", "sso", "beta"]
LIMITS = ["seats", "projects", "api_calls"]
POLICY = AccessPolicy(fallback_plan="free", past_due_grace=timedelta(days=3))


def app(store, clock: ManualClock) -> Entitlements:
    ents = Entitlements(store, clock=clock, policy=POLICY)
    for plan in CATALOG:
        ents.plans.define(plan, actor="staff")
    return ents


# -- the property ---------------------------------------------------------------------------

_owner = st.sampled_from(OWNERS)
step = st.one_of(
    st.tuples(st.just("trial"), _owner, st.sampled_from(PLANS[1:]), st.integers(1, 30)),
    st.tuples(st.just("subscribe"), _owner, st.sampled_from(PLANS)),
    st.tuples(st.just("change_plan"), _owner, st.sampled_from(PLANS)),
    st.tuples(st.just("seats"), _owner, st.integers(1, 40)),
    st.tuples(
        st.just("addon"), _owner, st.integers(1, 3), st.one_of(st.none(), st.integers(1, 40))
    ),
    st.tuples(st.just("remove_addon"), _owner),
    st.tuples(
        st.just("feature_override"),
        _owner,
        st.sampled_from(FEATURES),
        st.booleans(),
        st.one_of(st.none(), st.integers(1, 40)),
    ),
    st.tuples(
        st.just("limit_override"),
        _owner,
        st.sampled_from(LIMITS),
        st.one_of(st.none(), st.integers(0, 100)),
    ),
    st.tuples(
        st.just("remove_override"),
        _owner,
        st.sampled_from(["feature", "limit"]),
        st.sampled_from(FEATURES + LIMITS),
    ),
    st.tuples(
        st.just("lifecycle"),
        _owner,
        st.sampled_from(["suspend", "resume", "mark_past_due", "settle", "cancel", "expire"]),
    ),
    st.tuples(st.just("cancel_at_end"), _owner),
    st.tuples(st.just("expire_in"), _owner, st.integers(1, 60)),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("wait"), st.integers(1, 40 * 24)),
    st.tuples(st.just("record")),
)


def _subscription_step(ents: Entitlements, clock: ManualClock, kind: str, args: list) -> None:
    subs, owner = ents.subscriptions, args[0]
    if kind == "trial":
        subs.start_trial(owner, args[1], actor="staff", trial_days=args[2])
    elif kind == "subscribe":
        subs.subscribe(owner, args[1], actor="staff")
    elif kind == "change_plan":
        subs.change_plan(owner, args[1], actor="staff", if_over_quota="allow")
    elif kind == "seats":
        subs.change_seats(owner, args[1], actor="staff", if_over_quota="allow")
    elif kind == "addon":
        ends = None if args[2] is None else clock.now() + timedelta(days=args[2])
        extra = AddOn("extra", {"projects": 5}, {"beta": True}, quantity=args[1], ends_at=ends)
        subs.add_addon(owner, extra, actor="staff")
    elif kind == "remove_addon":
        subs.remove_addon(owner, "extra", actor="staff")
    elif kind == "lifecycle":
        getattr(subs, args[1])(owner, actor="staff")
    elif kind == "cancel_at_end":
        subs.cancel(owner, actor="staff", at_period_end=True)
    elif kind == "expire_in":
        subs.amend(owner, actor="staff", expires_at=clock.now() + timedelta(days=args[1]))


def _override_step(ents: Entitlements, clock: ManualClock, kind: str, args: list) -> None:
    owner = args[0]
    if kind == "feature_override":
        until = None if args[3] is None else clock.now() + timedelta(days=args[3])
        ents.overrides.set_feature(
            owner, args[1], enabled=args[2], actor="staff", reason="r", expires_at=until
        )
    elif kind == "limit_override":
        ents.overrides.set_limit(owner, args[1], args[2], actor="staff", reason="r")
    else:
        ents.overrides.remove(owner, args[1], args[2], actor="staff", reason="done")


def apply(ents: Entitlements, clock: ManualClock, op: tuple) -> None:
    kind, *args = op
    try:
        if kind == "wait":
            clock.advance(hours=args[0])
        elif kind == "sweep":
            ents.process_due()
        elif kind.endswith("override"):
            _override_step(ents, clock, kind, args)
        else:
            _subscription_step(ents, clock, kind, args)
    except EntitlementsError:  # refused by the rules: nothing changed
        pass


def answers(snapshot: Snapshot) -> tuple[Any, ...]:
    """Everything an owner is told: status, access, plan version, every feature for every
    action and every limit, each with its explanation."""
    return (
        snapshot.status,
        snapshot.access,
        snapshot.plan_key,
        snapshot.plan_version,
        tuple(snapshot.explain(f, a) for f in FEATURES for a in (None, *Action)),
        tuple(snapshot.explain_limit(name) for name in LIMITS),
    )


def check_the_past_answers_as_it_did(store, ops) -> None:
    clock = ManualClock(START)
    ents = app(store, clock)
    recorded: dict[tuple[datetime, Owner], tuple[Any, ...]] = {}
    for op in [*ops, ("record",)]:
        if op[0] != "record":
            apply(ents, clock, op)
            continue
        for owner in OWNERS:
            held = ents.subscriptions.find(owner)
            recorded[(clock.now(), owner)] = (answers(ents.resolve(owner)), held)
        clock.advance(seconds=1)  # later writes take effect after what was recorded
    clock.advance(days=400)
    ents.process_due()
    later = Entitlements(store, clock=clock, policy=POLICY)  # a cold process, long after
    for (at, owner), (then, held) in recorded.items():
        assert answers(later.resolve(owner, at)) == then, (at, owner)
        assert later.subscriptions.at(owner, at) == held, (at, owner)


CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(
    max_examples=100 if CI else 15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(step, max_size=30))
def test_a_past_instant_answers_as_it_did_then(kind, make_store, ops):
    check_the_past_answers_as_it_did(make_store(kind), ops)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
@settings(
    max_examples=30 if CI else 6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(step, max_size=20))
def test_a_past_instant_answers_as_it_did_then_on_servers(kind, make_store, ops):
    check_the_past_answers_as_it_did(make_store(kind), ops)


# -- examples -------------------------------------------------------------------------------


@pytest.fixture(params=STORE_KINDS)
def setup(request, make_store):
    clock = ManualClock(START)
    return app(make_store(request.param), clock), clock


def test_an_override_removed_since_still_answers_for_its_time(setup):
    ents, clock = setup
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.overrides.set_feature(ACME, "sso", enabled=True, actor="ann", reason="pilot")
    during = clock.now()
    clock.advance(days=2)
    ents.overrides.remove(ACME, "feature", "sso", actor="ann", reason="pilot over")
    clock.advance(days=1)
    assert not ents.allows(ACME, "sso")
    then = ents.resolve(ACME, during)
    assert then.allows("sso")
    assert "pilot" in str(then.explain("sso"))
    assert not ents.resolve(ACME, during - timedelta(seconds=1)).allows("sso")
    assert not ents.resolve(ACME, clock.now() - timedelta(hours=1)).allows("sso")


def test_an_override_that_expired_answers_for_the_time_it_ran(setup):
    ents, clock = setup
    ents.overrides.set_limit(
        ACME,
        "projects",
        50,
        actor="ann",
        reason="launch",
        expires_at=clock.now() + timedelta(days=3),
    )
    clock.advance(days=10)
    ents.process_due()  # the sweep removes it
    assert ents.limit(ACME, "projects") == 3
    assert ents.resolve(ACME, START + timedelta(days=1)).limit("projects") == 50
    assert ents.resolve(ACME, START + timedelta(days=4)).limit("projects") == 3


def test_a_canceled_subscription_then_a_new_one(setup):
    ents, clock = setup
    first = ents.subscriptions.subscribe(ACME, "enterprise", actor="staff", seats=20)
    on_enterprise = clock.now()
    clock.advance(days=5)
    ents.subscriptions.cancel(ACME, actor="staff")
    canceled = clock.now()
    clock.advance(days=5)
    second = ents.subscriptions.start_trial(ACME, "growth", actor="staff", trial_days=14)
    on_trial = clock.now()
    clock.advance(days=30)  # the trial ran out; nothing stored that

    then = ents.subscriptions.at(ACME, on_enterprise)
    assert then is not None
    assert (then.id, then.status, then.seats) == (first.id, SubscriptionStatus.ACTIVE, 20)
    assert ents.subscriptions.at(ACME, canceled).status is SubscriptionStatus.CANCELED
    during_trial = ents.subscriptions.at(ACME, on_trial + timedelta(days=13))
    assert (during_trial.id, during_trial.status) == (second.id, SubscriptionStatus.TRIALING)
    after_trial = ents.subscriptions.at(ACME, on_trial + timedelta(days=15))
    assert after_trial.status is SubscriptionStatus.EXPIRED  # time applied as of then
    assert ents.subscriptions.at(ACME, START - timedelta(days=1)) is None

    assert ents.resolve(ACME, on_enterprise).allows("sso")
    assert ents.resolve(ACME, on_enterprise).plan_key == "enterprise"
    assert ents.resolve(ACME, canceled + timedelta(days=1)).plan_key == "free"  # the fallback
    assert ents.resolve(ACME, on_trial).plan_key == "growth"
    assert ents.resolve(ACME).plan_key == "free"


def test_the_grace_of_a_past_due_owner_ran_as_it_did(setup):
    ents, clock = setup
    ents.subscriptions.subscribe(ACME, "growth", actor="staff")
    ents.subscriptions.mark_past_due(ACME, actor="billing")
    clock.advance(days=10)
    ents.subscriptions.settle(ACME, actor="billing")
    assert ents.resolve(ACME, START + timedelta(days=1)).allows("export", "create")
    assert not ents.resolve(ACME, START + timedelta(days=4)).allows("export", "create")
    assert ents.resolve(ACME).allows("export", "create")


def test_a_future_instant_lets_time_run_on_what_is_stored(setup):
    ents, clock = setup
    ents.subscriptions.start_trial(ACME, "growth", actor="staff", trial_days=14)
    assert ents.resolve(ACME, clock.now() + timedelta(days=13)).plan_key == "growth"
    assert ents.resolve(ACME, clock.now() + timedelta(days=15)).plan_key == "free"
    later = ents.subscriptions.at(ACME, clock.now() + timedelta(days=15))
    assert later.status is SubscriptionStatus.EXPIRED


def test_past_answers_are_not_cached(setup):
    ents, clock = setup
    ents.subscriptions.subscribe(ACME, "enterprise", actor="staff")
    clock.advance(days=1)
    ents.subscriptions.change_plan(ACME, "growth", actor="staff", if_over_quota="allow")
    assert not ents.allows(ACME, "sso")  # warm now
    assert ents.resolve(ACME, START).allows("sso")
    assert not ents.allows(ACME, "sso")
    assert not ents.snapshot(ACME).allows("sso")


def test_writes_of_one_instant_the_last_one_wins(setup):
    ents, clock = setup
    with ents.atomic():
        ents.subscriptions.subscribe(ACME, "growth", actor="staff")
        ents.subscriptions.change_seats(ACME, 3, actor="staff")
        ents.subscriptions.change_seats(ACME, 4, actor="staff")
        ents.overrides.set_limit(ACME, "projects", 7, actor="ann", reason="a")
        ents.overrides.set_limit(ACME, "projects", 9, actor="ann", reason="b")
    at = clock.now()
    clock.advance(days=1)
    ents.subscriptions.change_seats(ACME, 5, actor="staff")
    ents.overrides.remove(ACME, "limit", "projects", actor="ann", reason="done")
    assert ents.subscriptions.at(ACME, at).seats == 4
    assert ents.resolve(ACME, at).limit("projects") == 9


@pytest.mark.parametrize("at", [datetime(2026, 1, 1), "2026-01-01", 3])
def test_a_naive_or_malformed_instant_is_refused(setup, at):
    ents, _ = setup
    with pytest.raises(InvalidInput):
        ents.resolve(ACME, at)
    with pytest.raises(InvalidInput):
        ents.subscriptions.at(ACME, at)


def test_an_aware_instant_in_another_zone_is_the_same_instant(setup):
    ents, clock = setup
    ents.subscriptions.subscribe(ACME, "enterprise", actor="staff")
    clock.advance(days=1)
    ents.subscriptions.cancel(ACME, actor="staff")
    then = (START + timedelta(hours=1)).astimezone(datetime.now(UTC).astimezone().tzinfo or UTC)
    assert ents.resolve(ACME, then).plan_key == "enterprise"
