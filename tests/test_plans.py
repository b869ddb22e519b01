from __future__ import annotations

from decimal import Decimal

import pytest

from catalog import GROWTH, build
from entitlements import (
    Feature,
    IllegalTransition,
    InvalidInput,
    Limit,
    Owner,
    Plan,
    PlanExists,
    PlanNotAssignable,
    PlanStatus,
    Price,
    UnknownPlan,
)
from entitlements.domain.plan import PLAN_STATUS_TRANSITIONS

ORG = Owner("organization", "1")


def test_trial_length_defaults_to_ninety_days():
    assert Plan("p", "P").trial_days == 90


@pytest.mark.parametrize(
    ("build_plan", "field"),
    [
        (lambda: Plan("Has Spaces", "P"), "plan.key"),
        (lambda: Plan("p", " "), "plan.name"),
        (lambda: Plan("p", "P", trial_days=-1), "plan.trial_days"),
        (lambda: Plan("p", "P", limits={"seats": Limit(-1)}), "limit.value"),
        (lambda: Plan("p", "P", limits={"seats": 5}), "limits.seats"),
        (lambda: Plan("p", "P", status="deleted"), "plan.status"),
        (lambda: Plan("p", "P", features={"x": Feature(actions={"fly"})}), "feature.actions"),
    ],
)
def test_bad_plans_are_refused_with_the_field_named(build_plan, field):
    with pytest.raises(InvalidInput) as caught:
        build_plan()
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (0.5, "EUR"),
        (Decimal("-1"), "EUR"),
        (Decimal("NaN"), "EUR"),
        (Decimal("10"), "euro"),
        ("x", "EUR"),
    ],
)
def test_prices_are_positive_decimals_in_an_iso_currency(amount, currency):
    with pytest.raises(InvalidInput):
        Price(amount, currency)


def test_limit_of_bool_is_refused():
    with pytest.raises(InvalidInput):
        Limit(True)


def test_defining_twice_is_a_conflict():
    ents, _ = build()
    with pytest.raises(PlanExists):
        ents.plans.define(GROWTH, actor="x")


def test_revising_terms_makes_a_new_version_and_subscriptions_stay_pinned():
    ents, _ = build()
    ents.subscriptions.subscribe(ORG, "growth", actor="staff")
    revised = ents.plans.revise(
        "growth", actor="staff", limits={**GROWTH.limits, "projects": Limit(40)}
    )
    assert revised.version == 2
    assert [p.version for p in ents.plans.versions("growth")] == [1, 2]
    assert ents.limit(ORG, "projects") == 20  # grandfathered on v1
    migrated = ents.subscriptions.migrate(ORG, actor="staff").subscription
    assert migrated.plan_version == 2
    assert ents.limit(ORG, "projects") == 40


def test_revising_with_identical_terms_changes_nothing():
    ents, _ = build()
    again = ents.plans.revise("growth", actor="staff", limits=GROWTH.limits)
    assert again.version == 1
    assert len(ents.plans.versions("growth")) == 1


def test_renaming_is_not_a_new_version():
    ents, _ = build()
    renamed = ents.plans.rename("growth", "Growth 2026", actor="staff")
    assert (renamed.name, renamed.version) == ("Growth 2026", 1)
    assert ents.plans.get("growth", 1).name == "Growth 2026"


def test_old_versions_keep_their_own_terms():
    ents, _ = build()
    ents.plans.revise("growth", actor="staff", features={"premium": Feature(True)})
    assert "export" in ents.plans.get("growth", 1).features
    assert "export" not in ents.plans.get("growth").features


@pytest.mark.parametrize("status", list(PlanStatus))
def test_plan_status_changes_follow_the_table(status):
    for target in PlanStatus:
        ents, _ = build()
        ents.plans.define(Plan("p", "P", status=PlanStatus.DRAFT), actor="x")
        path = {
            PlanStatus.DRAFT: [],
            PlanStatus.ACTIVE: [PlanStatus.ACTIVE],
            PlanStatus.ARCHIVED: [PlanStatus.ACTIVE, PlanStatus.ARCHIVED],
            PlanStatus.RETIRED: [PlanStatus.ACTIVE, PlanStatus.RETIRED],
        }[status]
        for step in path:
            ents.plans.set_status("p", step, actor="x")
        before = ents.plans.get("p")
        if target in PLAN_STATUS_TRANSITIONS[status]:
            assert ents.plans.set_status("p", target, actor="x").status is target
        elif target is status:
            assert ents.plans.set_status("p", target, actor="x") == before
        else:
            with pytest.raises(IllegalTransition):
                ents.plans.set_status("p", target, actor="x")
            assert ents.plans.get("p") == before


def test_only_active_plans_go_to_new_owners():
    ents, _ = build()
    ents.plans.define(Plan("draft", "Draft"), actor="x")
    with pytest.raises(PlanNotAssignable, match="draft"):
        ents.subscriptions.start_trial(ORG, "draft", actor="x")
    ents.plans.archive("growth", actor="x")
    with pytest.raises(PlanNotAssignable, match="archived"):
        ents.subscriptions.start_trial(ORG, "growth", actor="x")
    ents.plans.retire("enterprise", actor="x")
    with pytest.raises(PlanNotAssignable, match="retired"):
        ents.subscriptions.subscribe(ORG, "enterprise", actor="x")
    assert ents.subscriptions.find(ORG) is None


def test_archived_plans_stay_with_the_owners_that_have_them():
    ents, _ = build()
    ents.subscriptions.subscribe(ORG, "growth", actor="x", seats=3)
    ents.plans.archive("growth", actor="x")
    assert ents.allows(ORG, "export")
    assert ents.subscriptions.change_seats(ORG, 4, actor="x").subscription.seats == 4
    ents.plans.revise("growth", actor="x", trial_days=30)
    assert ents.subscriptions.migrate(ORG, actor="x").subscription.plan_version == 2


def test_plans_limited_to_owner_kinds():
    ents, _ = build()
    ents.plans.define(
        Plan("reseller", "Reseller", status="active", owner_kinds={"customer"}), actor="x"
    )
    with pytest.raises(PlanNotAssignable, match="customer"):
        ents.subscriptions.subscribe(ORG, "reseller", actor="x")
    ents.subscriptions.subscribe(Owner("customer", "c1"), "reseller", actor="x")


def test_unknown_plans_are_lookup_errors():
    ents, _ = build()
    with pytest.raises(UnknownPlan) as caught:
        ents.subscriptions.start_trial(ORG, "platinum", actor="x")
    assert isinstance(caught.value, LookupError)
    with pytest.raises(UnknownPlan):
        ents.plans.get("growth", 7)
