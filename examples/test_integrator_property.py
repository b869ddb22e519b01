"""An integrator's property test: whatever the plan catalog and whatever staff do, the
host's paywall agrees with the library, and a suspended owner never writes.

Run it with ``pytest examples/test_integrator_property.py``; the fixtures
(``entitlements_app``, ``entitlements_clock``) come from the library's pytest plugin and
the strategies from ``entitlements.testing.strategies``.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entitlements import Action, EntitlementsError, Owner, PlanStatus, SubscriptionStatus
from entitlements.testing.strategies import operation_sequences, plans

ACME = Owner("organization", "acme")


def paywall(app, owner: Owner, feature: str) -> str:
    """The host's own code under test: what the page shows."""
    if app.allows(owner, feature, Action.CREATE):
        return "editor"
    if app.allows(owner, feature, Action.READ):
        return "viewer"
    return "upsell"


def run(app, clock, op, arg) -> None:
    subs = app.subscriptions
    calls = {
        "start_trial": lambda: subs.start_trial(ACME, arg, actor="staff:t"),
        "subscribe": lambda: subs.subscribe(ACME, arg, actor="staff:t"),
        "convert": lambda: subs.convert(ACME, actor="staff:t", plan_key=arg),
        "change_plan": lambda: subs.change_plan(ACME, arg, actor="staff:t"),
        "change_seats": lambda: subs.change_seats(ACME, arg, actor="staff:t"),
        "suspend": lambda: subs.suspend(ACME, actor="staff:t"),
        "resume": lambda: subs.resume(ACME, actor="staff:t"),
        "mark_past_due": lambda: subs.mark_past_due(ACME, actor="staff:t"),
        "settle": lambda: subs.settle(ACME, actor="staff:t"),
        "cancel": lambda: subs.cancel(ACME, actor="staff:t"),
        "cancel_at_period_end": lambda: subs.cancel(ACME, actor="staff:t", at_period_end=True),
        "undo_cancel": lambda: subs.undo_cancel(ACME, actor="staff:t"),
        "expire": lambda: subs.expire(ACME, actor="staff:t"),
    }
    if op == "advance":
        clock.advance(arg)
        app.process_due()
        return
    with contextlib.suppress(EntitlementsError):  # refused calls change nothing
        calls[op]()


@settings(
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    catalog=st.lists(
        plans(status=PlanStatus.ACTIVE), min_size=3, max_size=3, unique_by=lambda p: p.key
    ),
    ops=operation_sequences(max_size=12),
    feature=st.sampled_from(["premium", "export", "sso"]),
)
def test_paywall_agrees_with_the_library(
    entitlements_app, entitlements_clock, catalog, ops, feature
):
    app = entitlements_app
    keys = {"free": catalog[0], "growth": catalog[1], "enterprise": catalog[2]}
    if app.plans.list() == []:
        for name, plan in keys.items():
            app.plans.define(
                plan.__class__(
                    name,
                    plan.name,
                    plan.limits,
                    plan.features,
                    plan.price,
                    plan.trial_days,
                    PlanStatus.ACTIVE,
                ),
                actor="staff:t",
            )
    for op, arg in ops:
        run(app, entitlements_clock, op, arg)
        shown = paywall(app, ACME, feature)
        sub = app.subscriptions.find(ACME)
        if sub is not None and sub.status is SubscriptionStatus.SUSPENDED:
            assert shown != "editor"
        explained = app.explain(ACME, feature, Action.CREATE)
        assert (shown == "editor") == explained.allowed
