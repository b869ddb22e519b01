"""The shipped strategies produce valid values, registered for st.from_type."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from entitlements import AddOn, Owner, Plan, Subscription, SubscriptionStatus
from entitlements.domain.due import advance
from entitlements.testing.strategies import instants, subscriptions


@given(st.from_type(Plan), st.from_type(Owner), st.from_type(AddOn))
def test_from_type_knows_the_library_types(plan, owner, addon):
    assert isinstance(plan, Plan)
    assert isinstance(owner, Owner)
    assert isinstance(addon, AddOn)


@given(st.from_type(Subscription))
def test_generated_subscriptions_are_consistent(sub):
    assert sub.updated_at >= sub.created_at
    if sub.status is SubscriptionStatus.SUSPENDED:
        assert sub.suspended_from is not None
    if sub.status is SubscriptionStatus.PAST_DUE:
        assert sub.past_due_since is not None
    if sub.is_terminal:
        assert not sub.cancel_at_period_end


@given(subscriptions(status=SubscriptionStatus.SUSPENDED))
def test_a_status_can_be_asked_for(sub):
    assert sub.status is SubscriptionStatus.SUSPENDED


@given(st.from_type(Subscription), instants())
def test_advancing_time_is_idempotent_for_any_reachable_subscription(sub, now):
    once, _ = advance(sub, max(now, sub.updated_at))
    twice, steps = advance(once, max(now, sub.updated_at))
    assert steps == []
    assert twice == once
