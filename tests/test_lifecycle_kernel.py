"""The lifecycle kernel is pure: the subscription, the change and the instant in; the new
state, the audit facts and the provider effects out. Every entry point composes it, so
its answers are checked here once, without a store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from entitlements import Actor, ActorKind, Event, IllegalTransition, Owner, Subscription
from entitlements import SubscriptionStatus as S
from entitlements.domain import lifecycle
from entitlements.domain.billing import PROVIDER_STATUSES, ProviderSubscription, path_to
from entitlements.domain.provider_commands import CommandKind
from entitlements.domain.subscription import RULES

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORG = Owner("organization", "7")
STAFF = Actor("ann", ActorKind.STAFF)
SWEEP = Actor.system("sweep")


def sub(status: S = S.TRIALING, **fields) -> Subscription:
    base = {
        "id": "s1",
        "owner": ORG,
        "plan_key": "growth",
        "plan_version": 1,
        "status": status,
        "created_at": T0,
        "updated_at": T0,
        "trial_ends_at": T0 + timedelta(days=14),
    }
    return Subscription(**{**base, **fields})


def test_a_change_returns_the_new_state_and_one_fact_naming_the_use_case():
    before = sub()
    step = lifecycle.change(
        before, Event.ACTIVATE, T0, {"seats": 3}, actor=STAFF, action="convert", reason="paid"
    )
    assert (step.before, step.after.status, step.after.seats) == (before, S.ACTIVE, 3)
    (fact,) = step.facts
    assert (fact.actor, fact.action, fact.reason) == (STAFF, "subscription.convert", "paid")
    assert (fact.before, fact.after, fact.target) == (before, step.after, "subscription:s1")
    assert before.status is S.TRIALING, "the subscription given is untouched"


@given(st.sampled_from(list(S)), st.sampled_from([e for e in Event if e in RULES]))
def test_a_change_the_table_forbids_is_refused_and_returns_nothing(status, event):
    before = sub(status)
    assume(status.value not in RULES[event].sources)
    with pytest.raises(IllegalTransition):
        lifecycle.change(before, event, T0, {}, actor=STAFF)


def test_a_start_is_one_fact_with_nothing_before():
    step = lifecycle.begin(
        Event.START_TRIAL,
        id="s2",
        owner=ORG,
        plan_key="growth",
        plan_version=2,
        now=T0,
        current=None,
        actor=STAFF,
        trial_ends_at=T0 + timedelta(days=7),
    )
    assert step.before is None
    assert step.after.status is S.TRIALING
    assert [(f.action, f.before) for f in step.facts] == [("subscription.start_trial", None)]


def test_catching_up_dates_each_fact_when_it_fell_due():
    ended = T0 + timedelta(days=14)
    step = lifecycle.catch_up(sub(), T0 + timedelta(days=20), actor=SWEEP)
    assert step.after.status is S.EXPIRED
    assert [(d.event, d.at) for d in step.due] == [(Event.END_TRIAL, ended)]
    (fact,) = step.facts
    assert (fact.actor, fact.action) == (SWEEP, "subscription.end_trial")
    assert fact.reason == f"due at {ended.isoformat()}"
    nothing = lifecycle.catch_up(sub(), T0, actor=SWEEP)
    assert (nothing.facts, nothing.due, nothing.after) == ((), (), sub())


def test_the_provider_path_goes_through_the_table():
    assert lifecycle.provider_path(S.PENDING, S.CANCELED) == [Event.ACTIVATE, Event.CANCEL]
    assert lifecycle.provider_path(S.ACTIVE, S.ACTIVE) == []
    assert lifecycle.provider_path(S.SUSPENDED, S.ACTIVE) == []  # staff's to lift
    for current in S:
        for wanted in S:
            if (current, wanted) != (S.PENDING, S.CANCELED):
                assert lifecycle.provider_path(current, wanted) == (path_to(current, wanted) or [])


def test_a_provider_state_starts_a_subscription_only_while_paid_or_pending():
    reported = sorted(PROVIDER_STATUSES)
    starts = {
        S(status): lifecycle.provider_start(
            ProviderSubscription("sub_1", ORG, "growth", status, T0)
        )
        for status in reported
    }
    assert starts[S.PENDING] is Event.BEGIN_CHECKOUT
    assert starts[S.ACTIVE] is starts[S.PAST_DUE] is Event.SUBSCRIBE
    assert {s for s, e in starts.items() if e is None} == {S.CANCELED, S.FAILED}


@given(
    free=st.booleans(),
    provider=st.booleans(),
    status=st.sampled_from([None, *S]),
    external=st.booleans(),
    paid=st.booleans(),
)
def test_where_an_assignment_goes(free, provider, status, external, paid):
    live = None if status is None else sub(status, external_id="sub_1" if external else None)
    way = lifecycle.route(plan_is_free=free, has_provider=provider, live=live, live_is_paid=paid)
    at_provider = live is not None and external and paid
    if free:
        expected = (
            lifecycle.Route.FREE_AFTER_PROVIDER_CANCEL
            if at_provider and provider
            else lifecycle.Route.FREE
        )
    elif not provider:
        expected = lifecycle.Route.DIRECT
    elif at_provider and status is S.ACTIVE:
        expected = lifecycle.Route.PROVIDER_CHANGE
    else:
        expected = lifecycle.Route.CHECKOUT
    assert way is expected


def test_provider_effects_carry_what_the_provider_needs():
    cancel = lifecycle.ProviderEffect.cancel("sub_1", at_period_end=True)
    assert (cancel.kind, dict(cancel.payload)) == (
        CommandKind.CANCEL,
        {"external_id": "sub_1", "at_period_end": True},
    )
    change = lifecycle.ProviderEffect.change_plan("sub_1", "bigger", 2, 5)
    assert change.kind is CommandKind.CHANGE_PLAN
    assert dict(change.payload)["plan_version"] == 2
    checkout = lifecycle.ProviderEffect.checkout("growth", 1, None, "alice")
    assert (checkout.kind, checkout.payload["manager"]) == (CommandKind.START_CHECKOUT, "alice")
