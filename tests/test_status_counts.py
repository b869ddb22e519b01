"""The console's status counts: owners by the status of their most recent subscription as
`subscriptions.get` reads it now (time applied, swept or not), on every store, exact past
any number of owners; as the readable owners listed when the authorizer may restrict."""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import Actor, Entitlements, EntitlementsError, ManualClock, Owner
from entitlements.service.authorization import PermissionRules
from entitlements.testing.contract import CATALOG, START
from entitlements.web import lists as console_lists
from entitlements.web.lists import OwnerLists
from test_history import app

OWNERS = [Owner("organization", "o1"), Owner("organization", "o2"), Owner("app", "1", tenant="t1")]
PLANS = ["free", "growth", "enterprise"]
STAFF = "staff"

_owner = st.sampled_from(OWNERS)
step = st.one_of(
    st.tuples(st.just("trial"), _owner, st.sampled_from(PLANS[1:]), st.integers(1, 20)),
    st.tuples(st.just("subscribe"), _owner, st.sampled_from(PLANS)),
    st.tuples(st.just("change_plan"), _owner, st.sampled_from(PLANS)),
    st.tuples(
        st.just("lifecycle"),
        _owner,
        st.sampled_from(["cancel", "suspend", "resume", "expire", "mark_past_due", "settle"]),
    ),
    st.tuples(st.just("cancel_at_end"), _owner),
    st.tuples(st.just("pause"), _owner, st.integers(1, 20)),
    st.tuples(st.just("unpause"), _owner),
    st.tuples(st.just("advance"), st.integers(1, 24 * 40)),
    st.tuples(st.just("sweep")),
)


def _apply(ents, clock: ManualClock, op: tuple) -> None:
    kind, args = op[0], op[1:]
    subs = ents.subscriptions
    try:
        if kind == "advance":
            clock.advance(hours=args[0])
        elif kind == "sweep":
            ents.process_due()
        elif kind == "trial":
            subs.start_trial(args[0], args[1], actor=STAFF, trial_days=args[2])
        elif kind == "subscribe":
            subs.subscribe(args[0], args[1], actor=STAFF)
        else:
            _change(subs, clock, kind, args)
    except EntitlementsError:
        pass  # a refused step leaves the store as it was


def _change(subs, clock: ManualClock, kind: str, args: tuple) -> None:
    owner = args[0]
    if kind == "change_plan":
        subs.change_plan(owner, args[1], actor=STAFF, if_over_quota="allow")
    elif kind == "lifecycle":
        getattr(subs, args[1])(owner, actor=STAFF)
    elif kind == "cancel_at_end":
        subs.cancel(owner, actor=STAFF, at_period_end=True)
    elif kind == "pause":
        subs.pause(owner, actor=STAFF, resume_at=clock.now() + timedelta(days=args[1]))
    elif kind == "unpause":
        subs.unpause(owner, actor=STAFF)


def _recount(ents) -> Counter[str]:
    found: Counter[str] = Counter()
    for owner in OWNERS:
        held = ents.subscriptions.find(owner)
        if held is not None:
            found[held.status.value] += 1
    return found


def check_counts_equal_a_recount(store, ops) -> None:
    clock = ManualClock(START)
    ents = app(store, clock)
    lists = OwnerLists(ents)
    for op in ops:
        _apply(ents, clock, op)
        assert lists.counts(STAFF) == _recount(ents), op
    clock.advance(days=60)
    assert lists.counts(STAFF) == _recount(ents)
    ents.process_due()
    assert lists.counts(STAFF) == _recount(ents)
    ents.close()


CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(
    max_examples=100 if CI else 20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(step, max_size=30))
def test_property_counts_equal_a_recount_through_get(kind, make_store, ops):
    check_counts_equal_a_recount(make_store(kind), ops)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
@settings(
    max_examples=30 if CI else 8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(step, max_size=20))
def test_property_counts_equal_a_recount_through_get_on_servers(kind, make_store, ops):
    check_counts_equal_a_recount(make_store(kind), ops)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_a_new_subscription_takes_its_owners_place_in_the_counts(kind, make_store):
    """An owner counts once, by its most recent subscription: an ended one it replaced
    no longer counts; a trial past its end counts as what it reads now, swept or not."""
    clock = ManualClock(START)
    ents = app(make_store(kind), clock)
    lists = OwnerLists(ents)
    acme, other = OWNERS[0], OWNERS[2]
    ents.subscriptions.subscribe(acme, "growth", actor=STAFF)
    ents.subscriptions.cancel(acme, actor=STAFF)
    assert lists.counts(STAFF) == Counter({"canceled": 1})
    ents.subscriptions.start_trial(acme, "growth", actor=STAFF, trial_days=3)
    ents.subscriptions.subscribe(other, "free", actor=STAFF)
    assert lists.counts(STAFF) == Counter({"trialing": 1, "active": 1})
    clock.advance(days=4)
    assert lists.counts(STAFF) == _recount(ents) == Counter({"expired": 1, "active": 1})
    ents.process_due()
    assert lists.counts(STAFF) == Counter({"expired": 1, "active": 1})
    ents.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_counts_are_exact_past_the_lists_cut(kind, make_store, monkeypatch):
    """More owners than a list reads per tenant: every one is counted."""
    monkeypatch.setattr(console_lists, "PER_TENANT", 3)
    ents = app(make_store(kind), ManualClock(START))
    for i in range(5):
        ents.subscriptions.subscribe(Owner("organization", f"many-{i}"), "growth", actor=STAFF)
    assert OwnerLists(ents).counts(STAFF) == Counter({"active": 5})
    ents.close()


def test_a_restricting_authorizer_counts_only_the_readable_owners(make_store):
    seen = Owner("organization", "seen")
    rules = PermissionRules(can_read=lambda actor, owner: owner == seen)
    ents = Entitlements(make_store("memory"), clock=ManualClock(START), authorizer=rules)
    for plan in CATALOG:
        ents.plans.define(plan, actor=Actor.system("setup"))
    ents.subscriptions.subscribe(seen, "growth", actor=Actor.system("setup"))
    ents.subscriptions.subscribe(
        Owner("organization", "hidden"), "growth", actor=Actor.system("setup")
    )
    assert OwnerLists(ents).counts(Actor(STAFF)) == Counter({"active": 1})
    ents.close()
