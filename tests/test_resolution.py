"""Entitlement resolution: precedence, status policy, explanations (pure, no store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog import ENTERPRISE, FREE, GROWTH
from entitlements import (
    Access,
    AccessPolicy,
    Action,
    AddOn,
    Combine,
    Feature,
    Limit,
    NaiveDatetime,
    Override,
    Owner,
    Plan,
    Reason,
    Source,
    Subscription,
    SubscriptionStatus,
    UnknownLimit,
    resolve,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)
ORG = Owner("organization", "9")
POLICY = AccessPolicy()
WRITES = [Action.CREATE, Action.UPDATE, Action.DELETE]


def sub(status=SubscriptionStatus.ACTIVE, plan=GROWTH, **kwargs) -> Subscription:
    return Subscription(
        id="s",
        owner=ORG,
        plan_key=plan.key,
        plan_version=plan.version,
        status=status,
        created_at=NOW - timedelta(days=10),
        updated_at=NOW - timedelta(days=10),
        **kwargs,
    )


def feature_override(key, enabled=True, expires_at=None, actions=None) -> Override:
    return Override.feature(
        ORG,
        key,
        enabled=enabled,
        reason="support ticket 12",
        actor="alice",
        at=NOW - timedelta(days=10),
        expires_at=expires_at,
        actions=actions,
    )


def limit_override(key, value, expires_at=None) -> Override:
    return Override.limit(
        ORG,
        key,
        value=value,
        reason="deal",
        actor="bob",
        at=NOW - timedelta(days=1),
        expires_at=expires_at,
    )


def test_active_subscription_grants_the_plan():
    snap = resolve(ORG, sub(), GROWTH, [], NOW, POLICY)
    assert snap.allows("export")
    assert snap.limit("projects") == 20
    decision = snap.explain("export")
    assert (decision.value, decision.reason, decision.source) == (True, Reason.PLAN, Source.PLAN)
    assert decision.status is SubscriptionStatus.ACTIVE
    assert "growth v1" in decision.detail


def test_unknown_features_and_limits_fail_closed_and_say_why():
    snap = resolve(ORG, sub(), GROWTH, [], NOW, POLICY)
    assert not snap.allows("teleport")
    assert not snap.allows("teleport", Action.READ)
    with pytest.raises(UnknownLimit):
        snap.limit("rockets")
    assert snap.limit("rockets", default=0) == 0
    assert not snap.defines("rockets")
    assert snap.explain("teleport").reason is Reason.UNKNOWN
    assert snap.explain_limit("rockets").reason is Reason.UNKNOWN


def test_unlimited_is_none_not_zero():
    snap = resolve(ORG, sub(plan=ENTERPRISE), ENTERPRISE, [], NOW, POLICY)
    assert snap.limit("projects") is None


def test_feature_restricted_to_actions():
    snap = resolve(ORG, sub(plan=FREE), FREE, [], NOW, POLICY)
    assert snap.allows("premium", "read")
    assert not snap.allows("premium", Action.CREATE)
    assert not snap.allows("premium")
    assert snap.explain("premium", "create").reason is Reason.ACTION_RESTRICTED


def test_no_subscription_and_no_fallback_grants_nothing():
    snap = resolve(ORG, None, None, [feature_override("export")], NOW, POLICY)
    assert not snap.allows("export")
    assert not snap.has_plan
    assert snap.explain("export").reason is Reason.NO_SUBSCRIPTION


def test_no_subscription_falls_back_to_the_default_plan():
    policy = AccessPolicy(fallback_plan="free")
    snap = resolve(ORG, None, None, [], NOW, policy, fallback=FREE)
    assert snap.plan_key == "free"
    assert snap.limit("projects") == 3
    assert snap.explain("premium", "read").reason is Reason.FALLBACK


@pytest.mark.parametrize(
    "status",
    [
        SubscriptionStatus.PENDING,
        SubscriptionStatus.FAILED,
        SubscriptionStatus.CANCELED,
        SubscriptionStatus.EXPIRED,
    ],
)
def test_ended_or_unconfirmed_statuses_grant_nothing_or_the_fallback(status):
    snap = resolve(ORG, sub(status), GROWTH, [], NOW, POLICY)
    assert not snap.allows("export")
    assert snap.explain("export").reason is Reason.STATUS
    fallback = resolve(
        ORG, sub(status), GROWTH, [], NOW, AccessPolicy(fallback_plan="free"), fallback=FREE
    )
    assert not fallback.allows("export")
    assert fallback.allows("premium", "read")
    assert fallback.plan_key == "free"


def test_past_due_keeps_access_during_grace_then_read_only():
    since = NOW - timedelta(days=3)
    in_grace = resolve(
        ORG, sub(SubscriptionStatus.PAST_DUE, past_due_since=since), GROWTH, [], NOW, POLICY
    )
    assert in_grace.allows("export", "create")
    assert in_grace.valid_until == since + POLICY.past_due_grace
    later = NOW + timedelta(days=5)
    after = resolve(
        ORG, sub(SubscriptionStatus.PAST_DUE, past_due_since=since), GROWTH, [], later, POLICY
    )
    assert after.allows("export", "read")
    assert not after.allows("export", "create")
    assert after.explain("export", "create").reason is Reason.READ_ONLY


def test_status_policy_is_configurable():
    policy = AccessPolicy(by_status={SubscriptionStatus.EXPIRED: Access.READ_ONLY})
    snap = resolve(ORG, sub(SubscriptionStatus.EXPIRED), GROWTH, [], NOW, policy)
    assert snap.allows("export", "read")
    assert not snap.allows("export", "update")


def test_add_ons_raise_limits_and_turn_on_features():
    extra = AddOn("extra-seats", limits={"seats": 5}, quantity=2)
    sso = AddOn("sso", features={"sso": True})
    snap = resolve(ORG, sub(seats=4, addons=(extra, sso)), GROWTH, [], NOW, POLICY)
    assert snap.limit("seats") == 14
    assert snap.allows("sso")
    assert snap.explain("sso").source is Source.ADDON
    assert "extra-seats x2" in snap.explain_limit("seats").detail


@pytest.mark.parametrize(
    ("combine", "expected"), [(Combine.SUM, 25), (Combine.MAX, 20), (Combine.REPLACE, 5)]
)
def test_how_an_add_on_combines_is_declared_per_limit(combine, expected):
    plan = Plan("p", "P", limits={"projects": Limit(20, combine=combine)}, status="active")
    snap = resolve(
        ORG, sub(plan=plan, addons=(AddOn("more", limits={"projects": 5}),)), plan, [], NOW, POLICY
    )
    assert snap.limit("projects") == expected


def test_purchased_seats_replace_the_plan_default():
    snap = resolve(ORG, sub(seats=12), GROWTH, [], NOW, POLICY)
    assert snap.limit("seats") == 12
    assert snap.explain_limit("seats").reason is Reason.PURCHASED_SEATS


def test_limit_override_replaces_everything_below_it():
    snap = resolve(
        ORG,
        sub(addons=(AddOn("more", limits={"projects": 5}),)),
        GROWTH,
        [limit_override("projects", 2)],
        NOW,
        POLICY,
    )
    assert snap.limit("projects") == 2
    decision = snap.explain_limit("projects")
    assert (decision.source, decision.reason) == (Source.OVERRIDE, Reason.OVERRIDE)
    assert "bob" in decision.detail
    assert "deal" in decision.detail


def test_override_can_switch_a_plan_feature_off():
    snap = resolve(ORG, sub(), GROWTH, [feature_override("export", enabled=False)], NOW, POLICY)
    assert not snap.allows("export", "read")
    assert snap.explain("export").reason is Reason.DISABLED
    assert snap.explain("export").source is Source.OVERRIDE


def test_snapshot_is_valid_until_the_next_time_driven_change():
    expiry = NOW + timedelta(days=2)
    trial = sub(SubscriptionStatus.TRIALING, trial_ends_at=NOW + timedelta(days=30))
    snap = resolve(ORG, trial, GROWTH, [feature_override("sso", expires_at=expiry)], NOW, POLICY)
    assert snap.valid_until == expiry


def test_naive_now_is_refused():
    with pytest.raises(NaiveDatetime):
        resolve(ORG, sub(), GROWTH, [], datetime(2026, 1, 1), POLICY)


# -- properties -------------------------------------------------------------------------

statuses = st.sampled_from(list(SubscriptionStatus))
feature_keys = st.sampled_from(["premium", "export", "sso", "beta"])
actions = st.sampled_from(list(Action))
override_sets = st.lists(
    st.builds(
        lambda key, enabled, days: feature_override(
            key, enabled, NOW + timedelta(days=days) if days else None
        ),
        feature_keys,
        st.booleans(),
        st.integers(-5, 5),
    ),
    max_size=4,
    unique_by=lambda o: o.key,
)


@given(statuses, override_sets, feature_keys, actions)
def test_active_overrides_beat_the_plan_and_expired_ones_are_ignored(
    status, overrides, key, action
):
    snap = resolve(ORG, sub(status), GROWTH, overrides, NOW, POLICY)
    without = resolve(
        ORG, sub(status), GROWTH, [o for o in overrides if o.is_active(NOW)], NOW, POLICY
    )
    assert snap.allows(key, action) == without.allows(key, action)
    active = {o.key: o for o in overrides if o.is_active(NOW)}
    if key in active and snap.access is Access.FULL:
        assert snap.allows(key, action) == active[key].enabled
        assert snap.explain(key, action).source is Source.OVERRIDE


@given(
    override_sets,
    feature_keys,
    st.sampled_from(WRITES),
    st.sampled_from([GROWTH, ENTERPRISE, FREE]),
)
def test_suspended_never_grants_a_write_action(overrides, key, action, plan):
    snap = resolve(ORG, sub(SubscriptionStatus.SUSPENDED, plan=plan), plan, overrides, NOW, POLICY)
    assert not snap.allows(key, action)
    assert not snap.allows(key)


@given(statuses, override_sets, feature_keys, st.one_of(st.none(), actions))
def test_allows_always_agrees_with_explain(status, overrides, key, action):
    snap = resolve(
        ORG,
        sub(status, addons=(AddOn("sso", features={"sso": True}),)),
        GROWTH,
        overrides,
        NOW,
        AccessPolicy(fallback_plan="free"),
        fallback=FREE,
    )
    assert snap.allows(key, action) == snap.explain(key, action).allowed


def test_features_by_action_with_overrides_restricting_actions():
    snap = resolve(
        ORG,
        sub(),
        GROWTH,
        [feature_override("export", actions=frozenset({Action.READ}))],
        NOW,
        POLICY,
    )
    assert snap.allows("export", "read")
    assert not snap.allows("export", "delete")
    assert Feature(enabled=False).granted_actions == frozenset()
