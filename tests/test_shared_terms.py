"""Lean snapshots: what a plan version grants is resolved once and shared by the owners
on it, and sharing never changes an answer — not across owners, statuses, add-ons and
overrides, nor across two stores holding different plans under one key and version."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitlements import (
    AccessPolicy,
    Entitlements,
    Limit,
    MemoryStore,
    OverrideKind,
    Owner,
    Plan,
    SubscriptionStatus,
    resolve,
)
from entitlements.domain import resolution
from entitlements.testing import strategies as ents_st

POLICY = AccessPolicy(fallback_plan="basic")


def forget_shared() -> None:
    for table in (
        resolution._PLAN_FEATURES,
        resolution._PLAN_LIMITS,
        resolution._GRANTS,
        resolution._SMALL,
    ):
        table._entries.clear()


@given(
    ents_st.plans(),
    ents_st.plans(),
    ents_st.plans(),
    st.one_of(ents_st.subscriptions(), ents_st.subscriptions(SubscriptionStatus.ACTIVE)),
    st.lists(ents_st.addons(), max_size=2, unique_by=lambda a: a.key),
    st.integers(0, 3),
    st.data(),
)
def test_sharing_never_changes_an_answer(plan, other, fallback, sub, addons, n, data):
    # another store's plan under the same key, version and revision, resolved first
    other = attrs.evolve(other, key=plan.key, version=plan.version, revision=plan.revision)
    fallback = attrs.evolve(fallback, key="basic")
    sub = attrs.evolve(sub, plan_key=plan.key, plan_version=plan.version, addons=tuple(addons))
    at = sub.updated_at + timedelta(hours=data.draw(st.integers(0, 2000)))
    overrides = []
    for drawn in data.draw(st.lists(ents_st.overrides(sub.owner, sub.updated_at), max_size=n)):
        own = sorted(plan.features if drawn.kind is OverrideKind.FEATURE else plan.limits)
        if own and data.draw(st.booleans()):  # mostly on the plan's own keys
            drawn = attrs.evolve(drawn, key=data.draw(st.sampled_from(own)))
        overrides.append(drawn)

    forget_shared()
    alone = resolve(sub.owner, sub, plan, overrides, at, POLICY, fallback)
    forget_shared()
    resolve(sub.owner, sub, other, overrides, at, POLICY, fallback)
    resolve(sub.owner, attrs.evolve(sub, addons=()), other, [], at, POLICY, fallback)
    resolve(sub.owner, attrs.evolve(sub, addons=()), plan, [], at, POLICY, fallback)
    shared = resolve(sub.owner, sub, plan, overrides, at, POLICY, fallback)
    assert shared == alone
    assert shared.explain_all() == alone.explain_all()


def test_owners_on_one_plan_share_its_terms_and_keep_their_own():
    ents = Entitlements(MemoryStore())
    ents.plans.define(
        Plan("team", "Team", features={f"f{i}": True for i in range(20)}, status="active"),
        actor="staff",
    )
    owners = [Owner("organization", str(i)) for i in range(50)]
    for owner in owners:
        ents.subscriptions.subscribe(owner, "team", actor="staff")
    ents.overrides.set_feature(owners[0], "f3", enabled=False, actor="staff", reason="abuse")
    plain = [ents.snapshot(o) for o in owners[1:]]
    assert len({id(s._features_explained) for s in plain}) == 1
    assert len({id(s._granted) for s in plain}) == 1
    assert len({id(s._limits) for s in plain}) == 1
    own = ents.snapshot(owners[0])
    assert not own.allows("f3")
    assert all(s.allows("f3") for s in plain)
    assert own._features_explained is not plain[0]._features_explained
    # what the override leaves alone is the plan's own decision object
    assert own._features_explained["f4"] is plain[0]._features_explained["f4"]
    assert own._features_explained["f3"] is not plain[0]._features_explained["f3"]


def test_shared_maps_are_not_handed_out_mutable():
    ents = Entitlements(MemoryStore())
    ents.plans.define(
        Plan("team", "Team", limits={"projects": Limit(3)}, status="active"), actor="s"
    )
    owner = Owner("organization", "1")
    ents.subscriptions.subscribe(owner, "team", actor="s")
    with pytest.raises(TypeError):
        ents.snapshot(owner).limits["projects"] = 10  # type: ignore[index]
    assert ents.limit(owner, "projects") == 3
