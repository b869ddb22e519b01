"""Seed 003's plan manager is a typed field of the subscription, in its own column: the
member who subscribed, whom no metadata edit can replace — on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs
import pytest

from conftest import STORE_KINDS
from entitlements import (
    Actor,
    ActorKind,
    Entitlements,
    InvalidInput,
    Limit,
    ManualClock,
    NotAuthorized,
    Owner,
    Plan,
    Price,
)
from entitlements.errors import PlanManagerProtected
from entitlements.service.authorization import AllRules, PlanManagerRules
from entitlements.testing.fakes import FakePaymentProvider

START = datetime(2026, 5, 1, 12, tzinfo=UTC)
W = Owner("workspace", "w1")
ALICE = Actor("alice", ActorKind.MEMBER)
BOB = Actor("bob", ActorKind.MEMBER)
GROWTH = Plan(
    "growth",
    "Growth",
    limits={"documents": Limit(1000)},
    price=Price(Decimal("29"), "USD"),
    status="active",
)
ENTERPRISE = Plan(
    "enterprise",
    "Enterprise",
    limits={"documents": Limit.unlimited()},
    price=Price(Decimal("299"), "USD"),
    status="active",
)


@pytest.fixture(params=STORE_KINDS)
def store(request, make_store):
    return make_store(request.param)


def app(store, *, provider=True):
    clock = ManualClock(START)
    fake = FakePaymentProvider(clock) if provider else None
    ents = Entitlements(
        store, clock=clock, payment_provider=fake, authorizer=AllRules(PlanManagerRules())
    )
    for plan in (GROWTH, ENTERPRISE):
        ents.plans.define(plan, actor="staff")
    return ents, fake


def test_the_member_who_checks_out_is_the_plan_manager_and_amend_cannot_change_it(store):
    ents, provider = app(store)
    try:
        checkout = ents.billing.assign_plan(W, "growth", actor=ALICE).checkout
        provider.complete_checkout(checkout.id)
        provider.deliver(ents)
        assert ents.subscriptions.get(W).plan_manager == "alice"
        ents.subscriptions.amend(W, actor="staff", metadata={"crm": "42"})
        with pytest.raises(InvalidInput, match="plan manager"):
            ents.subscriptions.amend(W, actor="staff", metadata={"plan_manager": "bob"})
        sub = ents.subscriptions.get(W)
        assert (sub.plan_manager, dict(sub.metadata)) == ("alice", {"crm": "42"})
        with pytest.raises(NotAuthorized, match="plan manager"):
            ents.subscriptions.cancel(W, actor=BOB)
        with pytest.raises(NotAuthorized):
            ents.billing.assign_plan(W, "enterprise", actor=BOB)
        with pytest.raises(PlanManagerProtected):
            ents.billing.ensure_member_removable(W, "alice")
        ents.billing.ensure_member_removable(W, "bob")
    finally:
        ents.close()


def test_staff_transfer_the_plan_manager_and_provider_events_do_not_revert_it(store):
    ents, provider = app(store)
    try:
        checkout = ents.billing.assign_plan(W, "growth", actor=ALICE).checkout
        state = provider.complete_checkout(checkout.id)
        provider.deliver(ents)
        with pytest.raises(NotAuthorized):
            ents.billing.transfer_plan_manager(W, "bob", actor=ALICE)
        ents.billing.transfer_plan_manager(W, "bob", actor="staff:ann", reason="alice left")
        provider.fail_payment(state.external_id)
        provider.pay(state.external_id)
        provider.deliver(ents)
        assert ents.subscriptions.get(W).plan_manager == "bob"
        with pytest.raises(NotAuthorized):
            ents.billing.cancel(W, actor=ALICE)
        assert ents.billing.cancel(W, actor=BOB).cancel_at_period_end
        scheduled = [
            e for e in ents.audit.for_owner(W) if e.action == "subscription.schedule_cancel"
        ]
        assert [e.actor for e in scheduled] == ["member:bob"]
    finally:
        ents.close()


def test_a_member_who_takes_a_paid_plan_directly_manages_it(store):
    ents, _ = app(store, provider=False)
    try:
        sub = ents.billing.assign_plan(W, "growth", actor=ALICE).subscription
        assert sub.plan_manager == "alice"
        with pytest.raises(NotAuthorized):
            ents.subscriptions.change_plan(W, "enterprise", actor=BOB)
        assert ents.subscriptions.change_plan(W, "enterprise", actor=ALICE).subscription
        staff_owned = Owner("workspace", "w2")
        assert ents.billing.assign_plan(staff_owned, "growth", actor="staff").subscription
        assert ents.subscriptions.get(staff_owned).plan_manager is None
    finally:
        ents.close()


def test_a_bad_plan_manager_is_refused(store):
    ents, _ = app(store, provider=False)
    try:
        ents.billing.assign_plan(W, "growth", actor="staff")
        refused = {
            "": "must be the member id of the plan manager or None, got ''",
            " ": "must be the member id of the plan manager or None",
            7: "must be the member id of the plan manager or None, got 7",
            "x" * 256: "must be at most 255 characters",
            "bob\x00": "must not contain control characters",
        }
        for bad, message in refused.items():
            with pytest.raises(InvalidInput, match=f"plan_manager: {message}"):
                ents.billing.transfer_plan_manager(W, bad, actor="staff")
        assert ents.subscriptions.get(W).plan_manager is None
    finally:
        ents.close()


def _amended(ents, owner):
    """The owner's subscription and its plan manager audit entry, without what names the
    owner or its provider subscription (they differ by owner, not by path)."""
    named = {"id", "owner", "external_id"}
    sub = ents.subscriptions.get(owner)
    entry = [e for e in ents.audit.for_owner(owner) if e.action == "subscription.set_plan_manager"]

    def plain(document):
        return {k: v for k, v in document.items() if k not in named}

    stored = {k: v for k, v in attrs.asdict(sub, recurse=False).items() if k not in named}
    last = entry[-1]
    return stored, (last.at, last.actor, last.reason, plain(last.before), plain(last.after))


def test_the_three_ways_to_name_the_plan_manager_store_and_audit_the_same(store):
    """Staff's transfer, `Subscriptions.set_plan_manager` and the provider filling in the
    member who checked out write one amendment: the same row and the same audit entry."""
    ents, provider = app(store)
    owners = [Owner("workspace", f"w{n}") for n in range(3)]
    try:
        for owner in owners:
            checkout = ents.billing.assign_plan(owner, "growth", actor=ALICE).checkout
            provider.complete_checkout(checkout.id)
            provider.deliver(ents)
            ents.billing.transfer_plan_manager(owner, None, actor="staff")
        provider.clock.advance(timedelta(minutes=1))
        as_provider = "provider:payment-provider"
        ents.subscriptions.set_plan_manager(owners[0], "alice", actor=as_provider)
        ents.billing.transfer_plan_manager(owners[1], "alice", actor=as_provider)
        assert ents.billing.reconcile(owners[2]).changes == ("set_plan_manager",)
        first, *others = [_amended(ents, owner) for owner in owners]
        assert first[0]["plan_manager"] == "alice"
        assert first[1][1:3] == (as_provider, None)
        assert all(other == first for other in others)
    finally:
        ents.close()


def test_only_the_plan_manager_schedules_pauses_or_hands_over_a_paid_plan(store):
    ents, _ = app(store, provider=False)
    try:
        ents.billing.assign_plan(W, "growth", actor=ALICE)
        before = ents.subscriptions.get(W)
        refused = (
            lambda: ents.subscriptions.schedule_change(W, plan="enterprise", actor=BOB),
            lambda: ents.subscriptions.pause(W, actor=BOB),
            lambda: ents.subscriptions.set_plan_manager(W, "bob", actor=BOB),
        )
        for attempt in refused:
            with pytest.raises(NotAuthorized, match="plan manager"):
                attempt()
        assert ents.subscriptions.get(W) == before
        assert ents.subscriptions.schedule_change(W, plan="enterprise", actor=ALICE)
        with pytest.raises(NotAuthorized, match="plan manager"):
            ents.subscriptions.cancel_pending_change(W, actor=BOB)
        ents.subscriptions.cancel_pending_change(W, actor=ALICE)
        ents.subscriptions.pause(W, actor=ALICE)
        with pytest.raises(NotAuthorized, match="plan manager"):
            ents.subscriptions.unpause(W, actor=BOB)
        assert ents.subscriptions.get(W).plan_manager == "alice"
    finally:
        ents.close()
