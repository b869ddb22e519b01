"""The provider seam cannot diverge silently: every local check runs before the provider
hears of anything, commands go through the outbox after commit, idempotently, retried by
the sweep, and stay visible until the provider acknowledges them — on every store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from conftest import STORE_KINDS
from entitlements import (
    Actor,
    ActorKind,
    Entitlements,
    Limit,
    ManualClock,
    OverQuotaRefused,
    Owner,
    Plan,
    Price,
    ProviderUnreachable,
    SubscriptionStatus,
)
from entitlements.domain.billing import AssignmentKind
from entitlements.domain.provider_commands import MAX_ATTEMPTS, CommandKind, CommandStatus
from entitlements.testing.fakes import FakePaymentProvider

START = datetime(2026, 5, 1, 12, tzinfo=UTC)
W = Owner("workspace", "w1")
ALICE = Actor("alice", ActorKind.MEMBER)
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


@pytest.fixture(params=STORE_KINDS)
def app(request, make_store):
    clock = ManualClock(START)
    provider = FakePaymentProvider(clock)
    ents = Entitlements(make_store(request.param), clock=clock, payment_provider=provider)
    for plan in (FREE, GROWTH, ENTERPRISE):
        ents.plans.define(plan, actor="staff")
    yield ents, clock, provider
    ents.close()


def paid(ents, provider, plan="growth"):
    """W on a paid plan at the provider, every event applied."""
    assignment = ents.billing.assign_plan(W, plan, actor=ALICE)
    state = provider.complete_checkout(assignment.checkout.id)
    provider.deliver(ents)
    return state


def test_a_local_refusal_never_reaches_the_provider(app):
    ents, _, provider = app
    state = paid(ents, provider, "enterprise")
    ents.usage.consume(W, "documents", 2000)
    calls = list(provider.calls)
    with pytest.raises(OverQuotaRefused):
        ents.billing.assign_plan(W, "growth", actor=ALICE)
    assert provider.calls == calls, "the provider was not asked"
    assert provider.subscriptions[state.external_id].plan_key == "enterprise"
    assert ents.subscriptions.get(W).plan_key == "enterprise"
    assert not ents.billing.state(W).pending_at_provider


def test_commands_are_sent_after_commit_with_an_idempotency_key(app):
    ents, _, provider = app
    state = paid(ents, provider)
    change = ents.billing.assign_plan(W, "enterprise", actor=ALICE)
    assert change.kind is AssignmentKind.PROVIDER_CHANGE
    assert change.command.kind is CommandKind.CHANGE_PLAN
    assert change.command.status is CommandStatus.SENT
    assert provider.acted[-1] == change.command.idempotency_key
    assert provider.subscriptions[state.external_id].plan_key == "enterprise"
    assert ents.subscriptions.get(W).plan_key == "enterprise"
    actions = [e.action for e in ents.audit.for_owner(W)]
    assert actions.index("billing.provider_command") < actions.index(
        "billing.provider_command_sent"
    )
    provider.deliver(ents)
    assert ents.subscriptions.get(W).plan_key == "enterprise"


def test_an_unreachable_provider_leaves_a_visible_pending_command_the_sweep_retries(app):
    ents, clock, provider = app
    provider.unavailable = True
    started = ents.billing.assign_plan(W, "growth", actor=ALICE)
    assert started.kind is AssignmentKind.CHECKOUT
    assert started.checkout is None
    assert started.command.status is CommandStatus.PENDING
    assert started.command.attempts == 1
    billing = ents.billing.state(W)
    assert billing.pending_at_provider
    assert billing.subscription.status is SubscriptionStatus.PENDING
    assert billing.pending[0].last_error.startswith("ConnectionError")

    assert ents.process_due().provider_commands == (), "not due before its retry time"
    provider.unavailable = False
    clock.advance(minutes=1)
    report = ents.process_due()
    assert [c.status for c in report.provider_commands] == [CommandStatus.SENT]
    assert not ents.billing.state(W).pending_at_provider
    checkout_id = report.provider_commands[0].result["checkout_id"]
    provider.complete_checkout(checkout_id)
    provider.deliver(ents)
    sub = ents.subscriptions.get(W)
    assert (sub.status, sub.plan_key, sub.plan_manager) == (
        SubscriptionStatus.ACTIVE,
        "growth",
        "alice",
    )
    assert ents.process_due().nothing_due


def test_a_lost_answer_is_retried_without_the_provider_acting_twice(app):
    ents, clock, provider = app
    state = paid(ents, provider)
    provider.lose_answers(1)
    change = ents.billing.assign_plan(W, "enterprise", actor=ALICE)
    assert change.command.status is CommandStatus.PENDING
    assert provider.subscriptions[state.external_id].plan_key == "enterprise", "it acted"
    events_before = len(provider.outbox)
    clock.advance(minutes=5)
    report = ents.process_due()
    assert [c.id for c in report.provider_commands] == [change.command.id]
    assert provider.acted.count(change.command.idempotency_key) == 1
    assert len(provider.outbox) == events_before, "no second change at the provider"
    assert not ents.billing.state(W).pending_at_provider


def test_cancel_at_period_end_goes_through_the_outbox(app):
    ents, clock, provider = app
    state = paid(ents, provider)
    provider.unavailable = True
    canceled = ents.billing.cancel(W, actor=ALICE)
    assert canceled.cancel_at_period_end, "our side decided and committed"
    pending = ents.billing.state(W).pending
    assert [(c.kind, c.payload["at_period_end"]) for c in pending] == [(CommandKind.CANCEL, True)]
    provider.unavailable = False
    clock.advance(minutes=1)
    ents.process_due()
    assert provider.subscriptions[state.external_id].cancel_at_period_end
    assert not ents.billing.state(W).pending_at_provider


def test_after_max_attempts_a_command_fails_visibly_and_staff_retry_it(app):
    ents, clock, provider = app
    paid(ents, provider)
    provider.unavailable = True
    change = ents.billing.assign_plan(W, "enterprise", actor=ALICE)
    for _ in range(MAX_ATTEMPTS + 2):
        clock.advance(hours=2)
        ents.process_due()
    billing = ents.billing.state(W)
    assert [c.id for c in billing.failed] == [change.command.id]
    assert billing.failed[0].attempts == MAX_ATTEMPTS
    clock.advance(hours=2)
    assert ents.process_due().provider_commands == (), "a failed command waits for staff"
    provider.unavailable = False
    retried = ents.billing.retry(W, change.command.id, actor="staff:ann")
    assert retried.status is CommandStatus.SENT
    assert not ents.billing.state(W).pending_at_provider


def test_inside_an_atomic_block_nothing_is_sent_until_commit_and_never_after_rollback(app):
    ents, _, provider = app
    state = paid(ents, provider)
    calls = len(provider.calls)

    def host_step_fails() -> None:
        with ents.atomic():
            ents.billing.assign_plan(W, "enterprise", actor=ALICE)
            assert len(provider.calls) == calls
            raise RuntimeError("the host's own step failed")

    with pytest.raises(RuntimeError):
        host_step_fails()
    assert len(provider.calls) == calls
    assert ents.subscriptions.get(W).plan_key == "growth"
    assert not ents.billing.state(W).pending_at_provider

    with ents.atomic():
        inside = ents.billing.assign_plan(W, "enterprise", actor=ALICE)
        assert inside.command.status is CommandStatus.PENDING
        assert len(provider.calls) == calls
    assert provider.subscriptions[state.external_id].plan_key == "enterprise"
    assert not ents.billing.state(W).pending_at_provider


def test_moving_to_free_cancels_at_the_provider_after_commit(app):
    ents, _, provider = app
    state = paid(ents, provider)
    back = ents.billing.assign_plan(W, "free", actor="staff")
    assert back.kind is AssignmentKind.DIRECT
    assert back.command.kind is CommandKind.CANCEL
    assert provider.subscriptions[state.external_id].status is SubscriptionStatus.CANCELED
    provider.deliver(ents)
    assert ents.subscriptions.get(W).plan_key == "free"


def test_reconcile_reads_the_provider_outside_our_transaction(app):
    ents, _, provider = app
    paid(ents, provider)
    provider.unavailable = True
    with pytest.raises(ProviderUnreachable):
        ents.billing.reconcile(W)
    provider.unavailable = False
    assert ents.billing.reconcile(W).outcome == "applied"


@pytest.mark.parametrize(
    "app", [kind for kind in STORE_KINDS if kind != "memory"], indirect=True
)  # a memory store lives in one process
def test_commands_survive_a_new_process(app):
    ents, clock, provider = app
    provider.unavailable = True
    ents.billing.assign_plan(W, "growth", actor=ALICE)
    other = Entitlements(ents.store, clock=clock, payment_provider=provider)
    try:
        assert other.billing.state(W).pending_at_provider
        provider.unavailable = False
        clock.advance(minutes=1)
        assert [c.status for c in other.process_due().provider_commands] == [CommandStatus.SENT]
    finally:
        other.close()
    assert not ents.billing.state(W).pending_at_provider
