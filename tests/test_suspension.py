"""A suspension survives whatever else happens to the subscription, and a past-due grace
period counts from when the subscription first became past due (seed 002)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import (
    AddOn,
    Entitlements,
    EntitlementsError,
    IllegalTransition,
    Limit,
    ManualClock,
    Owner,
    Plan,
    SubscriptionStatus,
)

ACME = Owner("organization", "acme")
CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"


def app(store) -> tuple[Entitlements, ManualClock]:
    clock = ManualClock()
    ents = Entitlements(store, clock=clock)
    for key in ("team", "business"):
        ents.plans.define(
            Plan(
                key,
                key.title(),
                features={"export": True},
                limits={"projects": Limit(10 if key == "team" else 100)},
                status="active",
            ),
            actor="staff",
        )
    return ents, clock


@pytest.fixture(params=STORE_KINDS)
def setup(request, make_store):
    return app(make_store(request.param))


def test_a_resume_after_a_period_passed_and_the_sweep_ran_returns_to_active(setup):
    ents, clock = setup
    ents.subscriptions.subscribe(ACME, "team", actor="staff")
    ents.subscriptions.suspend(ACME, actor="staff", reason="abuse report")
    clock.advance(days=40)
    ents.process_due()
    ents.subscriptions.resume(ACME, actor="staff", reason="resolved")
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.ACTIVE
    assert ents.allows(ACME, "export")


@pytest.mark.parametrize(
    "change",
    ["amend", "seats", "plan", "addon"],
)
def test_a_resume_after_other_changes_returns_to_the_status_before_the_suspension(setup, change):
    ents, _ = setup
    ents.subscriptions.start_trial(ACME, "team", actor="staff")
    ents.subscriptions.suspend(ACME, actor="staff", reason="chargeback")
    if change == "amend":
        ents.subscriptions.amend(ACME, actor="staff", notes="called the customer")
    elif change == "seats":
        ents.subscriptions.change_seats(ACME, 4, actor="staff")
    elif change == "plan":
        ents.subscriptions.change_plan(ACME, "business", actor="staff")
    else:
        ents.subscriptions.add_addon(ACME, AddOn("extra", {"projects": 5}), actor="staff")
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.SUSPENDED
    ents.subscriptions.resume(ACME, actor="staff")
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.TRIALING


def test_a_trial_that_runs_out_while_suspended_ends_and_cannot_be_resumed(setup):
    ents, clock = setup
    ents.subscriptions.start_trial(ACME, "team", actor="staff", trial_days=60)
    ents.subscriptions.suspend(ACME, actor="staff", reason="review")
    clock.advance(days=60)  # exactly the trial end, no sweep
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.EXPIRED
    with pytest.raises(IllegalTransition):
        ents.subscriptions.resume(ACME, actor="staff")
    assert not ents.allows(ACME, "export")


def test_past_due_grace_does_not_restart_on_suspend_and_resume(setup):
    ents, clock = setup
    ents.subscriptions.subscribe(ACME, "team", actor="staff")
    ents.subscriptions.mark_past_due(ACME, actor="staff")
    first = ents.subscriptions.get(ACME).past_due_since
    clock.advance(days=5)
    ents.subscriptions.suspend(ACME, actor="staff", reason="review")
    ents.subscriptions.amend(ACME, actor="staff", notes="still reviewing")
    clock.advance(days=1)
    ents.subscriptions.resume(ACME, actor="staff")
    resumed = ents.subscriptions.get(ACME)
    assert resumed.status is SubscriptionStatus.PAST_DUE
    assert resumed.past_due_since == first
    assert ents.allows(ACME, "export", "create")  # day 6 of a 7-day grace
    clock.advance(days=1, seconds=1)
    assert not ents.allows(ACME, "export", "create"), "the grace ended 7 days after day 0"
    assert ents.allows(ACME, "export", "read")


# -- the property ----------------------------------------------------------------------

change = st.sampled_from(["amend", "seats", "plan", "addon", "wait", "sweep"])


def apply(ents: Entitlements, clock: ManualClock, step: str, n: int) -> None:
    try:
        if step == "amend":
            ents.subscriptions.amend(ACME, actor="staff", notes=f"note {n}")
        elif step == "seats":
            ents.subscriptions.change_seats(ACME, n % 9 + 1, actor="staff")
        elif step == "plan":
            ents.subscriptions.change_plan(ACME, ["team", "business"][n % 2], actor="staff")
        elif step == "addon":
            ents.subscriptions.add_addon(ACME, AddOn(f"extra-{n}", {"projects": 1}), actor="staff")
        elif step == "wait":
            clock.advance(days=n % 45)
        else:
            ents.process_due()
    except EntitlementsError:
        pass  # refused by a rule: nothing changed, on both sides alike


def run(store, start: str, steps: list[tuple[str, int]], suspended: bool):
    ents, clock = app(store)
    if start == "trial":
        ents.subscriptions.start_trial(ACME, "team", actor="staff", trial_days=60)
    else:
        ents.subscriptions.subscribe(ACME, "team", actor="staff")
        if start == "past_due":
            ents.subscriptions.mark_past_due(ACME, actor="staff")
    if suspended:
        ents.subscriptions.suspend(ACME, actor="staff", reason="review")
    for step, n in steps:
        apply(ents, clock, step, n)
    if suspended:
        assert ents.subscriptions.get(ACME).status is SubscriptionStatus.SUSPENDED or (
            ents.subscriptions.get(ACME).status not in _LIVE
        )
        if ents.subscriptions.get(ACME).status is SubscriptionStatus.SUSPENDED:
            ents.subscriptions.resume(ACME, actor="staff")
    sub = ents.subscriptions.get(ACME)
    return sub.status, sub.past_due_since, sub.plan_key, sub.seats


_LIVE = {
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.SUSPENDED,
}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(
    max_examples=80 if CI else 15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=st.sampled_from(["trial", "active", "past_due"]),
    steps=st.lists(st.tuples(change, st.integers(0, 100)), max_size=12),
)
def test_resume_returns_to_the_status_the_subscription_would_have_had(
    kind, make_store, start, steps
):
    without = run(make_store(kind), start, steps, suspended=False)
    with_suspension = run(make_store(kind), start, steps, suspended=True)
    assert with_suspension == without
