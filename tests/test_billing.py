"""Plan assignment flows through the fake provider (seeds 003 and 004), provider events,
reconciliation, authorization rules and claims."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from entitlements import (
    AccessPolicy,
    Actor,
    ActorKind,
    Entitlements,
    InvalidInput,
    Limit,
    ManualClock,
    MemoryStore,
    NotAuthorized,
    Owner,
    Plan,
    PlanNotAssignable,
    PlanRetired,
    Price,
    SubscriptionStatus,
)
from entitlements.domain.billing import AssignmentKind, ProviderEvent, ProviderSubscription
from entitlements.errors import (
    BillingActionRequired,
    FreePlanTaken,
    OwnerHasActivePlan,
    PlanManagerProtected,
)
from entitlements.service.authorization import AllRules, PermissionRules, PlanManagerRules
from entitlements.service.claims import verify_claims_token
from entitlements.testing.fakes import FakePaymentProvider

START = datetime(2026, 5, 1, 12, tzinfo=UTC)
FREE = Plan("free", "Free", limits={"documents": Limit(100)}, status="active")
GROWTH = Plan(
    "growth",
    "Growth",
    limits={"documents": Limit(1000)},
    features={"premium": True},
    price=Price(Decimal("29"), "USD"),
    status="active",
)
ENTERPRISE = Plan(
    "enterprise",
    "Enterprise",
    limits={"documents": Limit.unlimited()},
    features={"premium": True, "sso": True},
    price=Price(Decimal("299"), "USD"),
    status="active",
)
ALICE = Actor("alice", ActorKind.MEMBER)
BOB = Actor("bob", ActorKind.MEMBER)


def app(**kwargs):
    clock = ManualClock(START)
    provider = FakePaymentProvider(clock)
    ents = Entitlements(MemoryStore(), clock=clock, payment_provider=provider, **kwargs)
    for plan in (FREE, GROWTH, ENTERPRISE):
        ents.plans.define(plan, actor="staff")
    return ents, clock, provider


# -- seed 003: workspaces, Stripe-like checkout, cancel at period end --------------------------

WORKSPACE = Owner("workspace", "w1")


def test_seed_003_subscribe_upgrade_downgrade_cancel_at_period_end():
    ents, clock, provider = app(policy=AccessPolicy(fallback_plan="free"))
    assert ents.snapshot(WORKSPACE).plan_key == "free"  # every workspace starts on Free

    started = ents.billing.assign_plan(WORKSPACE, "growth", actor=ALICE)
    assert started.kind is AssignmentKind.CHECKOUT
    assert started.checkout.url.startswith("https://pay.example/checkout/")
    assert ents.subscriptions.get(WORKSPACE).status is SubscriptionStatus.PENDING
    assert not ents.allows(WORKSPACE, "premium")

    provider.complete_checkout(started.checkout.id)
    provider.deliver(ents)
    sub = ents.subscriptions.get(WORKSPACE)
    assert (sub.status, sub.plan_key) == (SubscriptionStatus.ACTIVE, "growth")
    assert sub.plan_manager == "alice"
    assert ents.allows(WORKSPACE, "premium")

    upgrade = ents.billing.assign_plan(WORKSPACE, "enterprise", actor=ALICE)
    assert upgrade.kind is AssignmentKind.PROVIDER_CHANGE
    assert provider.calls[-1][0] == "change_plan"
    assert ents.allows(WORKSPACE, "sso")
    provider.deliver(ents)  # the provider's own "updated" webhook changes nothing more
    assert ents.subscriptions.get(WORKSPACE).plan_key == "enterprise"

    ents.billing.assign_plan(WORKSPACE, "growth", actor=ALICE)
    assert not ents.allows(WORKSPACE, "sso")

    with pytest.raises(OwnerHasActivePlan):
        ents.billing.ensure_deletable(WORKSPACE)
    canceled = ents.billing.cancel(WORKSPACE, actor=ALICE)
    assert canceled.status is SubscriptionStatus.ACTIVE
    assert canceled.cancel_at_period_end
    assert ents.allows(WORKSPACE, "premium"), "active until the end of the paid period"
    ents.billing.ensure_deletable(WORKSPACE)  # marked to cancel: may be deleted
    provider.deliver(ents)

    clock.set(canceled.current_period.end + timedelta(seconds=1))
    ents.process_due()
    assert ents.subscriptions.get(WORKSPACE).status is SubscriptionStatus.CANCELED
    assert ents.snapshot(WORKSPACE).plan_key == "free"  # back to the default plan


def test_seed_003_only_the_plan_manager_changes_a_paid_plan():
    ents, _, provider = app(authorizer=AllRules(PlanManagerRules()))
    checkout = ents.billing.assign_plan(WORKSPACE, "growth", actor=ALICE).checkout
    provider.complete_checkout(checkout.id)
    provider.deliver(ents)
    with pytest.raises(NotAuthorized, match="plan manager"):
        ents.billing.assign_plan(WORKSPACE, "enterprise", actor=BOB)
    with pytest.raises(NotAuthorized):
        ents.billing.cancel(WORKSPACE, actor=BOB)
    assert ents.audit.for_owner(WORKSPACE)[-1].action == "authorization.denied"
    ents.billing.assign_plan(WORKSPACE, "enterprise", actor=ALICE)
    ents.billing.assign_plan(
        WORKSPACE, "growth", actor=Actor("support", ActorKind.STAFF)
    )  # staff may
    with pytest.raises(PlanManagerProtected):
        ents.billing.ensure_member_removable(WORKSPACE, "alice")
    ents.billing.ensure_member_removable(WORKSPACE, "bob")


# -- seed 004: apps of a tenant, free/paid, one free app, on hold, retired plans ----------------

APP1 = Owner("app", "a1", tenant="t1")
APP2 = Owner("app", "a2", tenant="t1")


def test_seed_004_free_to_paid_to_paid_to_free():
    ents, _, provider = app()
    free = ents.billing.assign_plan(APP1, "free", actor="staff")
    assert free.kind is AssignmentKind.DIRECT
    assert provider.calls == []

    checkout = ents.billing.assign_plan(APP1, "growth", actor="staff")
    assert checkout.kind is AssignmentKind.CHECKOUT
    assert ents.subscriptions.get(APP1).plan_key == "free", (
        "stays on free until the provider confirms"
    )
    state = provider.complete_checkout(checkout.checkout.id)
    provider.deliver(ents)
    sub = ents.subscriptions.get(APP1)
    assert (sub.plan_key, sub.external_id) == ("growth", state.external_id)

    change = ents.billing.assign_plan(APP1, "enterprise", actor="staff")
    assert change.kind is AssignmentKind.PROVIDER_CHANGE
    assert ents.limit(APP1, "documents") is None

    back = ents.billing.assign_plan(APP1, "free", actor="staff")
    assert back.kind is AssignmentKind.DIRECT
    assert provider.calls[-1] == (
        "cancel",
        {"external_id": state.external_id, "at_period_end": False},
    )
    assert provider.subscriptions[state.external_id].status is SubscriptionStatus.CANCELED
    assert ents.subscriptions.get(APP1).plan_key == "free"
    assert [s.status for s in ents.subscriptions.history(APP1)] == [
        SubscriptionStatus.CANCELED,
        SubscriptionStatus.ACTIVE,
    ]
    provider.deliver(ents)  # the provider's cancel webhook: ours is already ended, nothing changes
    assert ents.subscriptions.get(APP1).plan_key == "free"


def test_seed_004_one_free_app_per_tenant():
    ents, _, _ = app(one_free_plan_per_tenant=True)
    ents.billing.assign_plan(APP1, "free", actor="staff")
    with pytest.raises(FreePlanTaken):
        ents.billing.assign_plan(APP2, "free", actor="staff")
    ents.billing.assign_plan(Owner("app", "a3", tenant="t2"), "free", actor="staff")


def test_seed_004_on_hold_blocks_owner_changes_until_paid():
    ents, _, provider = app()
    checkout = ents.billing.assign_plan(APP1, "growth", actor=ALICE).checkout
    state = provider.complete_checkout(checkout.id)
    provider.deliver(ents)
    provider.fail_payment(state.external_id)
    provider.deliver(ents)
    assert ents.subscriptions.get(APP1).status is SubscriptionStatus.PAST_DUE
    with pytest.raises(BillingActionRequired):
        ents.billing.assign_plan(APP1, "enterprise", actor=ALICE)
    provider.pay(state.external_id)
    provider.deliver(ents)
    assert (
        ents.billing.assign_plan(APP1, "enterprise", actor=ALICE).kind
        is AssignmentKind.PROVIDER_CHANGE
    )


def test_seed_004_failed_checkout_and_plan_status_rules():
    ents, _, provider = app()
    checkout = ents.billing.assign_plan(APP1, "growth", actor="staff").checkout
    provider.expire_checkout(checkout.id)
    provider.deliver(ents)
    assert ents.subscriptions.get(APP1).status is SubscriptionStatus.FAILED
    ents.plans.define(Plan("beta", "Beta"), actor="staff")
    with pytest.raises(PlanNotAssignable, match="draft"):
        ents.billing.assign_plan(APP2, "beta", actor="staff")
    ents.billing.assign_plan(APP2, "free", actor="staff")
    ents.plans.archive("free", actor="staff")
    with pytest.raises(PlanNotAssignable, match="archived"):
        ents.billing.assign_plan(Owner("app", "a9", tenant="t1"), "free", actor="staff")


def test_seed_004_claims_and_retired_plans():
    ents, _, _ = app()
    assert ents.claims(APP1).limits is None  # no plan: tokens carry no limits claim
    assert "limits" not in ents.claims(APP1).document()
    ents.billing.assign_plan(APP1, "free", actor="staff")
    claims = ents.claims(APP1)
    assert claims.document()["limits"] == {"documents": 100}
    key = Ed25519PrivateKey.generate()
    token = ents.claims_token(APP1, key, audience="docs-api", now=datetime.now(UTC))
    decoded = verify_claims_token(token, key.public_key(), audience="docs-api")
    assert (decoded["sub"], decoded["plan"], decoded["limits"]) == (
        "t1/app:a1",
        "free",
        {"documents": 100},
    )
    expired = ents.claims_token(APP1, key, now=datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(InvalidInput, match="expired"):
        verify_claims_token(expired, key.public_key())
    with pytest.raises(InvalidInput):
        verify_claims_token(token, Ed25519PrivateKey.generate().public_key(), audience="docs-api")
    ents.plans.retire("free", actor="staff")
    with pytest.raises(PlanRetired):
        ents.claims(APP1)


# -- without a provider: staff-managed billing (seed 000) -------------------------------------


def test_without_a_provider_paid_plans_are_assigned_directly():
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    ents.plans.define(GROWTH, actor="staff")
    assert ents.billing.assign_plan(APP1, "growth", actor="staff").kind is AssignmentKind.DIRECT
    with pytest.raises(InvalidInput, match="no payment provider"):
        ents.billing.reconcile(APP1)


# -- provider events: idempotent, out of order, unknown types, reconcile ------------------------


def test_events_are_idempotent_and_older_ones_never_win():
    ents, _, provider = app()
    checkout = ents.billing.assign_plan(APP1, "growth", actor="staff").checkout
    state = provider.complete_checkout(checkout.id)
    provider.fail_payment(state.external_id)
    provider.pay(state.external_id)
    completed, failed, paid = provider.take_events()
    outcomes = [
        ents.billing.apply_provider_event(e).outcome
        for e in (completed, paid, failed, paid, completed)
    ]
    assert outcomes == ["applied", "applied", "stale", "duplicate", "duplicate"]
    assert ents.subscriptions.get(APP1).status is SubscriptionStatus.ACTIVE


def test_unknown_event_types_are_refused_clearly():
    state = ProviderSubscription("sub_1", APP1, "growth", "active", START)
    with pytest.raises(InvalidInput, match=r"unknown provider event type 'refund\.created'"):
        ProviderEvent("evt_1", "refund.created", START, state)
    with pytest.raises(InvalidInput, match="a provider reports one of"):
        ProviderSubscription("sub_1", APP1, "growth", "suspended", START)


def test_reconcile_repairs_lost_webhooks_and_never_downgrades_without_evidence():
    ents, _, provider = app()
    checkout = ents.billing.assign_plan(APP1, "growth", actor="staff").checkout
    state = provider.complete_checkout(checkout.id)
    provider.deliver(ents)
    provider.fail_payment(state.external_id)
    provider.take_events()  # the webhook got lost
    assert ents.subscriptions.get(APP1).status is SubscriptionStatus.ACTIVE
    outcome = ents.billing.reconcile(APP1)
    assert outcome.changes == ("mark_past_due",)
    assert ents.subscriptions.get(APP1).status is SubscriptionStatus.PAST_DUE
    assert ents.audit.for_owner(APP1)[-1].action == "billing.reconcile"
    del provider.subscriptions[state.external_id]  # the provider knows nothing of it now
    outcome = ents.billing.reconcile(APP1)
    assert "nothing changed" in outcome.changes[0]
    assert ents.subscriptions.get(APP1).status is SubscriptionStatus.PAST_DUE


@settings(deadline=None)
@given(
    steps=st.lists(
        st.sampled_from(["fail", "pay", "upgrade", "cancel_at_end", "resume_plan", "cancel"]),
        max_size=8,
    ),
    seed=st.integers(0, 10**6),
    duplicate=st.booleans(),
)
def test_any_duplication_and_reordering_of_the_event_stream_converges(steps, seed, duplicate):
    ents, _, provider = app()
    checkout = ents.billing.assign_plan(APP1, "growth", actor="staff").checkout
    state = provider.complete_checkout(checkout.id)
    for step in steps:
        current = provider.subscriptions[state.external_id]
        if current.status is SubscriptionStatus.CANCELED:
            break
        if step == "fail":
            provider.fail_payment(state.external_id)
        elif step == "pay":
            provider.pay(state.external_id)
        elif step == "upgrade":
            provider.change_plan(state.external_id, ENTERPRISE, seats=None)
        elif step == "cancel_at_end":
            provider.cancel(state.external_id, at_period_end=True)
        elif step == "resume_plan":
            provider.change_plan(state.external_id, GROWTH, seats=None)
        else:
            provider.cancel(state.external_id, at_period_end=False)
    events = provider.take_events()

    in_order, _, _ = app()
    in_order.billing.assign_plan(APP1, "growth", actor="staff")
    provider.deliver(in_order, events)
    shuffled, _, _ = app()
    shuffled.billing.assign_plan(APP1, "growth", actor="staff")
    provider.deliver(shuffled, events, duplicate=duplicate, shuffle=random.Random(seed))

    def final(e):
        sub = e.subscriptions.get(APP1)
        return sub.status, sub.plan_key, sub.cancel_at_period_end, sub.external_id

    assert final(in_order) == final(shuffled)
    expected = provider.subscriptions[state.external_id]
    assert final(in_order)[:2] == (expected.status, expected.plan_key)


# -- authorization (seed 002) -----------------------------------------------------------------


def test_seed_002_manage_permission_and_read_access():
    readers = {"ann"}
    rules = PermissionRules(can_read=lambda actor, owner: actor.id in readers)
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock, authorizer=rules)
    ents.plans.define(FREE, actor=Actor.system("setup"))
    customer = Owner("customer", "c1")
    admin = Actor("ann", permissions=frozenset({"subscriptions.manage"}))
    viewer = Actor("vic")
    ents.subscriptions.subscribe(customer, "free", actor=admin)
    with pytest.raises(NotAuthorized, match=r"subscriptions\.manage"):
        ents.subscriptions.suspend(customer, actor=viewer)
    assert ents.subscriptions.get(customer).status is SubscriptionStatus.ACTIVE
    denied = ents.audit.for_owner(customer)[-1]
    assert (denied.action, denied.actor, denied.after["action"]) == (
        "authorization.denied",
        "staff:vic",
        "subscription.suspend",
    )
    assert ents.subscriptions.get(customer, actor=admin).plan_key == "free"
    with pytest.raises(NotAuthorized, match="read access"):
        ents.subscriptions.get(customer, actor=viewer)
    ents.process_due()  # the sweep acts on its own authority
