"""The shipped strategies produce valid values, registered for st.from_type."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from entitlements import AddOn, Owner, Plan, Subscription, SubscriptionStatus
from entitlements.domain.contracts.contract import Contract, ContractStatus, SignerStatus
from entitlements.domain.due import advance
from entitlements.testing.strategies import contracts, instants, subscriptions, usage_streams


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


@given(st.from_type(Contract))
def test_contracts_at_any_stage_have_consistent_hashes(contract):
    assert contract == contract.with_hashes()
    if contract.status is ContractStatus.COMPLETED:
        assert {s.status for s in contract.signers} == {SignerStatus.SIGNED}


@given(contracts(stage=ContractStatus.SIGNED))
def test_a_contract_stage_can_be_asked_for(contract):
    assert contract.status is ContractStatus.SIGNED
    assert any(s.status is SignerStatus.SIGNED for s in contract.signers)


@given(usage_streams())
def test_usage_streams_drive_the_usage_api(stream):
    from entitlements import (
        Entitlements,
        InvalidInput,
        Limit,
        LimitExceeded,
        LimitKind,
        ManualClock,
        MemoryStore,
        Plan,
    )

    clock = ManualClock()
    ents = Entitlements(MemoryStore(), clock=clock)
    ents.plans.define(
        Plan(
            "m",
            "M",
            limits={"api_calls": Limit(200, kind=LimitKind.METERED), "projects": Limit(100)},
            status="active",
        ),
        actor="t",
    )
    owner = Owner("organization", "o")
    ents.subscriptions.subscribe(owner, "m", actor="t")
    held = []
    for kind, args in stream:
        try:
            if kind == "consume":
                ents.usage.consume(owner, args["metric"], args["amount"], key=args["key"])
            elif kind == "reserve":
                held.append(ents.usage.reserve(owner, args["metric"], args["amount"]))
            elif kind == "commit" and held:
                reservation = held.pop(0)
                ents.usage.commit(owner, reservation.id, min(args["amount"], reservation.amount))
            elif kind == "release" and held:
                ents.usage.release(owner, held.pop().id)
            elif kind == "advance":
                clock.advance(args["delta"])
                ents.process_due()
        except (LimitExceeded, InvalidInput):
            pass  # over the limit, or the reservation expired meanwhile
    assert ents.usage.check(owner, "projects").used <= 100
