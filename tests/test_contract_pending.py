"""A trial is not converted to paid while the owner's contract is out for signature,
whichever path converts it, on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conftest import STORE_KINDS
from entitlements import (
    ContractPending,
    Entitlements,
    EntitlementsError,
    Limit,
    ManualClock,
    Owner,
    Plan,
    SubscriptionStatus,
)
from entitlements.domain.contracts.contract import SignerSpec

ACME = Owner("organization", "acme")
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
CONSENT = "I agree to use electronic records and signatures."


@pytest.fixture(params=STORE_KINDS)
def app(request, make_store):
    clock = ManualClock(START)
    ents = Entitlements(make_store(request.param), clock=clock)
    ents.plans.define(
        Plan("pro", "Pro", limits={"seats": Limit(10)}, status="active"), actor="staff"
    )
    ents.subscriptions.start_trial(ACME, "pro", actor="staff:ann")
    yield ents, clock
    ents.close()


def issue(ents, **kwargs):
    return ents.contracts.issue(
        ACME,
        title="MSA",
        body="The customer subscribes to Pro.",
        signers=[
            SignerSpec("Ada Lovelace", "ada@acme.test", "CEO"),
            SignerSpec("Bob Byte", "bob@acme.test", "CFO"),
        ],
        actor="staff:ann",
        plan_key="pro",
        **kwargs,
    )


def sign(ents, token, clock):
    clock.advance(minutes=1)
    ents.contracts.open(token)
    ents.contracts.consent(token, consent_text=CONSENT, consent_version="v1")
    ents.contracts.sign(token, typed_name="Someone")


def test_an_open_contract_blocks_a_plain_convert_and_nothing_changes(app):
    ents, clock = app
    contract = issue(ents)
    tokens = ents.contracts.send(ACME, contract.id, actor="staff:ann")
    sign(ents, tokens["s1"], clock)  # one of two signers
    audit_before = len(ents.audit.for_owner(ACME))
    with pytest.raises(ContractPending) as refused:
        ents.subscriptions.convert(ACME, actor="staff:ann", seats=5)
    assert isinstance(refused.value, EntitlementsError)
    assert refused.value.contract_ids == (contract.id,)
    assert contract.id in str(refused.value)
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.TRIALING
    assert len(ents.audit.for_owner(ACME)) == audit_before


def test_a_created_contract_not_yet_sent_also_blocks(app):
    ents, _ = app
    issue(ents)
    with pytest.raises(ContractPending):
        ents.subscriptions.convert(ACME, actor="staff:ann")


def test_without_contract_converts_explicitly(app):
    ents, _ = app
    issue(ents)
    sub = ents.subscriptions.convert(ACME, actor="staff:ann", without_contract=True)
    assert sub.status is SubscriptionStatus.ACTIVE


def test_a_completed_contract_converts_through_contracts_convert(app):
    ents, clock = app
    contract = issue(ents)
    for token in ents.contracts.send(ACME, contract.id, actor="staff:ann").values():
        sign(ents, token, clock)
    sub = ents.contracts.convert(ACME, contract.id, actor="staff:ann", seats=3)
    assert (sub.status, sub.seats, sub.metadata["contract_id"]) == (
        SubscriptionStatus.ACTIVE,
        3,
        contract.id,
    )


@pytest.mark.parametrize("ending", ["void", "expire"])
def test_closed_contracts_do_not_block(app, ending):
    ents, clock = app
    contract = issue(ents)
    if ending == "void":
        ents.contracts.void(ACME, contract.id, actor="staff:ann", reason="replaced")
    else:
        clock.set(contract.expires_at + timedelta(seconds=1))  # past, not yet swept
    sub = ents.subscriptions.convert(ACME, actor="staff:ann")
    assert sub.status is SubscriptionStatus.ACTIVE


def test_another_owners_contract_does_not_block(app):
    ents, _ = app
    other = Owner("organization", "globex")
    ents.subscriptions.start_trial(other, "pro", actor="staff:ann")
    issue(ents)
    assert ents.subscriptions.convert(other, actor="staff:ann").status is SubscriptionStatus.ACTIVE
