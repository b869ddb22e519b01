"""A contract binds what was signed (seed 000), conversion clears a cancellation set for
the trial's end, and every contract event says who and from where — on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from conftest import STORE_KINDS
from entitlements import (
    BillingCycle,
    ContractAlreadyConverted,
    ContractTermsMismatch,
    Entitlements,
    IllegalTransition,
    InvalidInput,
    Limit,
    ManualClock,
    OverQuotaRefused,
    Owner,
    Plan,
    PlanNotAssignable,
    Price,
    SubscriptionStatus,
)
from entitlements.domain.contracts.contract import SignerSpec
from entitlements.domain.contracts.events import EventType
from entitlements.domain.contracts.link import ContractLink

ACME = Owner("organization", "acme")
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
CONSENT = "I agree to use electronic records and signatures."
PRO = Plan(
    "pro",
    "Pro",
    limits={"projects": Limit(20)},
    features={"export": True},
    price=Price(Decimal("100"), "EUR", BillingCycle.monthly()),
    status="active",
)
SMALL = Plan(
    "small",
    "Small",
    limits={"projects": Limit(3)},
    price=Price(Decimal("10"), "EUR", BillingCycle.monthly()),
    status="active",
)
DRAFT = Plan("later", "Later", price=Price(Decimal("5"), "EUR"), status="draft")


@pytest.fixture(params=STORE_KINDS)
def app(request, make_store):
    clock = ManualClock(START)
    ents = Entitlements(make_store(request.param), clock=clock)
    for plan in (PRO, SMALL, DRAFT):
        ents.plans.define(plan, actor="staff")
    yield ents, clock
    ents.close()


def issue(ents, **kwargs):
    fields = {
        "title": "Order form",
        "body": "Acme subscribes to Pro.",
        "signers": [SignerSpec("Ada Lovelace", "ada@acme.test", "CEO")],
        "actor": "staff:ann",
        "plan_key": "pro",
        "term": "12 months",
        "amount": Decimal("1200.00"),
        "currency": "EUR",
    }
    return ents.contracts.issue(ACME, **{**fields, **kwargs})


def sign(ents, contract, clock, *, ip="203.0.113.7", user_agent="Firefox/140"):
    tokens = ents.contracts.send(ACME, contract.id, actor="staff:ann")
    for token in tokens.values():
        clock.advance(minutes=1)
        ents.contracts.open(token, ip=ip, user_agent=user_agent)
        ents.contracts.consent(token, consent_text=CONSENT, consent_version="v1")
        ents.contracts.sign(token, typed_name="Ada Lovelace", ip=ip, user_agent=user_agent)
    return ents.contracts.get(ACME, contract.id)


def personal(ents, contract_id, commitment):
    return ents.contracts.evidence(ACME, contract_id)["personal_data"][commitment]["value"]


# -- item 2: conversion clears a cancellation set for the trial's end --------------------


def test_converting_a_trial_clears_the_cancellation_scheduled_for_its_end(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff", trial_days=14)
    scheduled = ents.subscriptions.cancel(ACME, actor="staff", at_period_end=True)
    assert scheduled.cancel_effective_at == scheduled.trial_ends_at
    converted = ents.subscriptions.convert(ACME, actor="staff")
    assert converted.status is SubscriptionStatus.ACTIVE
    assert not converted.cancel_at_period_end
    clock.set(converted.current_period.end + timedelta(days=1))
    ents.process_due()
    after = ents.subscriptions.get(ACME)
    assert after.status is SubscriptionStatus.ACTIVE, "a paid plan does not cancel by itself"
    assert after.current_period.start == converted.current_period.end


def test_staff_may_keep_the_cancellation_explicitly(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff", trial_days=14)
    ents.subscriptions.cancel(ACME, actor="staff", at_period_end=True)
    converted = ents.subscriptions.convert(ACME, actor="staff", keep_cancellation=True)
    assert converted.cancel_at_period_end
    assert converted.cancel_effective_at == converted.current_period.end
    clock.set(converted.current_period.end)
    ents.process_due()
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.CANCELED
    with pytest.raises(InvalidInput):
        ents.subscriptions.convert(ACME, actor="staff", keep_cancellation="yes")


def test_converting_from_a_contract_clears_it_too_unless_kept(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff", trial_days=30)
    ents.subscriptions.cancel(ACME, actor="staff", at_period_end=True)
    first = sign(ents, issue(ents), clock)
    assert not ents.contracts.convert(ACME, first.id, actor="staff").cancel_at_period_end

    other = Owner("organization", "globex")
    ents.subscriptions.start_trial(other, "pro", actor="staff", trial_days=30)
    ents.subscriptions.cancel(other, actor="staff", at_period_end=True)
    contract = ents.contracts.issue(
        other,
        title="Order",
        body="Globex subscribes.",
        signers=[SignerSpec("Gil", "gil@globex.test")],
        actor="staff",
        plan_key="pro",
    )
    for token in ents.contracts.send(other, contract.id, actor="staff").values():
        ents.contracts.open(token)
        ents.contracts.consent(token, consent_text=CONSENT, consent_version="v1")
        ents.contracts.sign(token, typed_name="Gil")
    kept = ents.contracts.convert(other, contract.id, actor="staff", keep_cancellation=True)
    assert kept.cancel_at_period_end


# -- item 8: a contract binds what was signed ----------------------------------------------


def test_converting_without_seats_keeps_the_trials_purchased_seats(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff", seats=8)
    contract = sign(ents, issue(ents), clock)
    assert contract.terms.seats == 8, "the seats at issue are pinned"
    converted = ents.contracts.convert(ACME, contract.id, actor="staff")
    assert converted.seats == 8


def test_the_signed_seats_apply_and_other_seats_are_refused(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff", seats=5)
    contract = sign(ents, issue(ents, seats=25), clock)
    with pytest.raises(ContractTermsMismatch, match="seats 25"):
        ents.contracts.convert(ACME, contract.id, actor="staff", seats=5)
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.TRIALING
    assert ents.contracts.convert(ACME, contract.id, actor="staff", seats=25).seats == 25


def test_the_pinned_plan_version_applies_not_the_latest(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    contract = sign(ents, issue(ents), clock)
    assert contract.terms.plan_version == 1
    ents.plans.revise("pro", actor="staff", limits={"projects": Limit(5)})
    converted = ents.contracts.convert(ACME, contract.id, actor="staff")
    assert (converted.plan_key, converted.plan_version) == ("pro", 1)
    assert ents.limit(ACME, "projects") == 20


def test_a_chosen_version_and_cycle_are_pinned_and_applied(app):
    ents, clock = app
    ents.plans.revise("pro", actor="staff", limits={"projects": Limit(50)})
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    contract = sign(ents, issue(ents, plan_version=1, cycle=BillingCycle.annual()), clock)
    assert (contract.terms.plan_version, contract.terms.cycle) == (1, BillingCycle.annual())
    converted = ents.contracts.convert(ACME, contract.id, actor="staff")
    assert converted.plan_version == 1
    assert converted.cycle == BillingCycle.annual()
    period = converted.current_period
    assert period.end.year == period.start.year + 1


def test_amount_and_term_are_stored_on_the_subscription_and_amend_cannot_change_them(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    contract = sign(ents, issue(ents), clock)
    converted = ents.contracts.convert(ACME, contract.id, actor="staff")
    assert converted.contract == ContractLink(contract.id, Decimal("1200.00"), "EUR", "12 months")
    ents.subscriptions.amend(ACME, actor="staff", metadata={"contract_id": "forged"})
    stored = ents.subscriptions.get(ACME)
    assert stored.contract == converted.contract
    assert stored.contract.amount == Decimal("1200.00")


def test_conversion_checks_usage_against_the_contracts_plan(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    ents.usage.consume(ACME, "projects", 10)
    contract = sign(ents, issue(ents, plan_key="small"), clock)
    with pytest.raises(OverQuotaRefused):
        ents.contracts.convert(ACME, contract.id, actor="staff")
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.TRIALING
    converted = ents.contracts.convert(ACME, contract.id, actor="staff", if_over_quota="allow")
    assert converted.plan_key == "small"
    assert "subscription.over_quota" in [e.action for e in ents.audit.for_owner(ACME)]


def test_a_trial_that_expired_during_signature_is_converted_from_the_contract(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff", trial_days=3, seats=7)
    contract = issue(ents)
    tokens = ents.contracts.send(ACME, contract.id, actor="staff")
    clock.advance(days=4)
    ents.process_due()
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.EXPIRED
    for token in tokens.values():
        ents.contracts.open(token)
        ents.contracts.consent(token, consent_text=CONSENT, consent_version="v1")
        ents.contracts.sign(token, typed_name="Ada")
    converted = ents.contracts.convert(ACME, contract.id, actor="staff")
    assert (converted.status, converted.plan_key, converted.plan_version, converted.seats) == (
        SubscriptionStatus.ACTIVE,
        "pro",
        1,
        7,
    )
    assert converted.contract.contract_id == contract.id
    assert [s.status for s in ents.subscriptions.history(ACME)] == [
        SubscriptionStatus.EXPIRED,
        SubscriptionStatus.ACTIVE,
    ]
    assert ents.allows(ACME, "export")


def test_a_contract_converts_once(app):
    ents, clock = app
    ents.subscriptions.start_trial(ACME, "pro", actor="staff")
    contract = sign(ents, issue(ents), clock)
    ents.contracts.convert(ACME, contract.id, actor="staff")
    ents.subscriptions.cancel(ACME, actor="staff")
    with pytest.raises(ContractAlreadyConverted):
        ents.contracts.convert(ACME, contract.id, actor="staff")
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.CANCELED


def test_a_contract_cannot_be_issued_for_a_plan_that_cannot_be_assigned(app):
    ents, _ = app
    with pytest.raises(PlanNotAssignable, match="draft"):
        issue(ents, plan_key="later")
    ents.plans.retire("small", actor="staff")
    with pytest.raises(PlanNotAssignable, match="retired"):
        issue(ents, plan_key="small")
    with pytest.raises(InvalidInput):
        issue(ents, plan_key=None, seats=3)
    assert ents.contracts.list(ACME) == []


@pytest.mark.parametrize(
    ("term", "message"),
    [
        ("", r"term: must be text such as '12 months' or None, got ''"),
        ("   ", r"term: must be text such as '12 months' or None"),
        (12, r"term: must be text such as '12 months' or None, got 12"),
        ("x" * 201, "term: must be at most 200 characters"),
        ("12\x00months", "term: must not contain control characters"),
    ],
)
def test_a_bad_term_is_refused_saying_what_fits(app, term, message):
    ents, _ = app
    with pytest.raises(InvalidInput, match=message):
        issue(ents, term=term)
    assert ents.contracts.list(ACME) == []
    assert issue(ents, term=None).terms.term is None


def test_converting_a_live_paid_subscription_is_refused_with_nothing_changed(app):
    ents, clock = app
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    contract = sign(ents, issue(ents), clock)
    with pytest.raises(IllegalTransition):
        ents.contracts.convert(ACME, contract.id, actor="staff")
    assert ents.subscriptions.get(ACME).contract is None


# -- item 9: every contract event says who and from where ----------------------------------


def test_staff_events_carry_the_actor_ip_and_user_agent(app):
    ents, _ = app
    context = {"ip": "192.0.2.10", "user_agent": "Console/2.0"}
    contract = issue(ents, **context)
    ents.contracts.send(ACME, contract.id, actor="staff:ann", **context)
    ents.contracts.resend(ACME, contract.id, "s1", actor="staff:bob", ip="192.0.2.11")
    ents.contracts.void(ACME, contract.id, actor="staff:ann", reason="wrong terms", **context)
    events = ents.contracts.events(ACME, contract.id)
    assert [(e.type, e.actor) for e in events] == [
        (EventType.ISSUED, "staff:ann"),
        (EventType.SENT, "staff:ann"),
        (EventType.SENT, "staff:bob"),
        (EventType.VOIDED, "staff:ann"),
    ]
    for event in events:
        assert personal(ents, contract.id, event.ip).startswith("192.0.2.")
    assert [personal(ents, contract.id, e.user_agent) for e in events if e.user_agent] == [
        "Console/2.0"
    ] * 3
    assert events[2].user_agent is None
    assert ents.contracts.verify(ACME, contract.id).ok


def test_staff_events_without_context_still_record_the_actor(app):
    ents, _ = app
    contract = issue(ents)
    event = ents.contracts.events(ACME, contract.id)[0]
    assert (event.actor, event.ip, event.user_agent) == ("staff:ann", None, None)


def test_completed_carries_the_context_of_the_completing_signature(app):
    ents, clock = app
    contract = sign(ents, issue(ents), clock, ip="198.51.100.2", user_agent="Safari/19")
    events = ents.contracts.events(ACME, contract.id)
    signed, completed = events[-2], events[-1]
    assert (signed.type, completed.type) == (EventType.SIGNED, EventType.COMPLETED)
    assert completed.signer_id == signed.signer_id == "s1"
    assert completed.data["signature_event"] == signed.hash
    assert personal(ents, contract.id, completed.ip) == "198.51.100.2"
    assert personal(ents, contract.id, completed.user_agent) == "Safari/19"
    assert ents.contracts.verify(ACME, contract.id).ok
    erased = ents.contracts.erase_personal_data(ACME, contract.id, actor="staff", reason="GDPR")
    assert erased > 0
    assert personal(ents, contract.id, completed.ip) is None
    assert ents.contracts.verify(ACME, contract.id).ok


@pytest.mark.parametrize("bad", [{"ip": 42}, {"user_agent": "x" * 1001}])
def test_bad_context_is_refused_before_anything_is_written(app, bad):
    ents, _ = app
    with pytest.raises(InvalidInput):
        issue(ents, **bad)
    assert ents.contracts.list(ACME) == []
    contract = issue(ents)
    with pytest.raises(InvalidInput):
        ents.contracts.send(ACME, contract.id, actor="staff", **bad)
    with pytest.raises(InvalidInput):
        ents.contracts.void(ACME, contract.id, actor="staff", reason="x", **bad)
    assert len(ents.contracts.events(ACME, contract.id)) == 1
