"""Rules with one home in the domain: the past-due grace, the retired plan's claims, why a
signing link is closed; and a setting that cannot work when changed is read-only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import (
    Access,
    AccessPolicy,
    Entitlements,
    Limit,
    ManualClock,
    MemoryStore,
    Owner,
    Plan,
    PlanRetired,
)
from entitlements.domain.access import grace_end, status_access
from entitlements.domain.contracts.closed import LinkClosed, why_link_closed
from entitlements.domain.contracts.contract import SignerSpec
from entitlements.domain.resolution import resolve
from entitlements.domain.subscription import Subscription, SubscriptionStatus

START = datetime(2026, 6, 1, 8, tzinfo=UTC)
ACME = Owner("organization", "acme")
PRO = Plan("pro", "Pro", limits={"projects": Limit(10)}, features={"sso": True}, status="active")
FREE = Plan("free", "Free", limits={"projects": Limit(1)}, status="active")


@pytest.fixture(params=STORE_KINDS)
def store(request, make_store):
    return make_store(request.param)


# -- past-due grace ----------------------------------------------------------------------


def _past_due(since: datetime) -> Subscription:
    return Subscription(
        id="s1",
        owner=ACME,
        plan_key="pro",
        plan_version=1,
        status=SubscriptionStatus.PAST_DUE,
        created_at=since,
        updated_at=since,
        past_due_since=since,
    )


@given(
    grace=st.integers(0, 20).map(lambda d: timedelta(days=d)),
    elapsed=st.integers(0, 30 * 24).map(lambda h: timedelta(hours=h)),
    after=st.sampled_from([Access.READ_ONLY, Access.NONE, Access.FALLBACK]),
)
def test_resolution_answers_what_the_grace_rule_decides(grace, elapsed, after):
    policy = AccessPolicy(past_due_grace=grace, after_grace=after, fallback_plan="free")
    subscription = _past_due(START)
    now = START + elapsed
    decided = status_access(subscription, policy, now)
    assert grace_end(subscription, policy) == START + grace
    assert decided.access is (Access.FULL if elapsed < grace else after)
    snapshot = resolve(ACME, subscription, PRO, [], now, policy, fallback=FREE)
    assert snapshot.access is decided.access
    if decided.until is not None:
        assert snapshot.valid_until is not None
        assert snapshot.valid_until <= decided.until


def test_no_grace_runs_where_past_due_grants_less_than_full_access():
    policy = AccessPolicy(by_status={"past_due": "read_only"})
    assert grace_end(_past_due(START), policy) is None
    assert status_access(_past_due(START), policy, START).access is Access.READ_ONLY


def test_after_the_grace_the_fallback_plan_is_loaded_and_answers(store):
    clock = ManualClock(START)
    policy = AccessPolicy(after_grace="fallback", fallback_plan="free")
    ents = Entitlements(store, clock=clock, policy=policy, max_staleness=0)
    for plan in (PRO, FREE):
        ents.plans.define(plan, actor="staff")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    ents.subscriptions.mark_past_due(ACME, actor="staff")
    assert ents.snapshot(ACME).plan_key == "pro"
    assert ents.snapshot(ACME).valid_until == START + policy.past_due_grace
    clock.advance(policy.past_due_grace)
    snapshot = ents.snapshot(ACME)
    assert (snapshot.plan_key, snapshot.access) == ("free", Access.FALLBACK)
    assert ents.limit(ACME, "projects") == 1
    ents.close()


# -- plan status rules -------------------------------------------------------------------


def test_only_a_retired_plan_refuses_claims():
    for status in ("draft", "active", "archived"):
        Plan("p", "P", status=status).check_grants_claims()
    with pytest.raises(PlanRetired):
        Plan("p", "P", status="retired").check_grants_claims()


def test_claims_of_an_owner_on_a_retired_plan_are_refused(store):
    ents = Entitlements(store, clock=ManualClock(START))
    ents.plans.define(PRO, actor="staff")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    assert ents.claims(ACME).plan == "pro"
    ents.plans.archive("pro", actor="staff")
    assert ents.claims(ACME).plan == "pro"
    ents.plans.retire("pro", actor="staff")
    with pytest.raises(PlanRetired):
        ents.claims(ACME)
    ents.close()


# -- settings ----------------------------------------------------------------------------


def test_one_free_plan_per_tenant_is_set_when_built_and_read_only_after():
    assert Entitlements(MemoryStore()).billing.one_free_plan_per_tenant is False
    ents = Entitlements(MemoryStore(), one_free_plan_per_tenant=True)
    assert ents.billing.one_free_plan_per_tenant is True
    with pytest.raises(AttributeError):
        ents.billing.one_free_plan_per_tenant = False  # type: ignore[misc]
    assert ents.billing.one_free_plan_per_tenant is True


# -- why a signing link is closed -----------------------------------------------------------


def _sent(ents: Entitlements, signers: int = 1) -> tuple[str, list[str]]:
    contract = ents.contracts.issue(
        ACME,
        title="Order",
        body="Terms.",
        signers=[SignerSpec(f"Signer {n}", f"s{n}@acme.test") for n in range(signers)],
        actor="staff",
        valid_for=timedelta(days=10),
    )
    tokens = ents.contracts.send(ACME, contract.id, actor="staff")
    return contract.id, [tokens[s] for s in sorted(tokens)]


def _why(ents: Entitlements, contract_id: str, token: str, signer: int = 0) -> LinkClosed:
    contract = ents.contracts.get(ACME, contract_id)
    return why_link_closed(contract, contract.signers[signer], token, ents.runtime.now())


def test_each_reason_a_link_is_closed():
    clock = ManualClock(START)
    ents = Entitlements(MemoryStore(), clock=clock)
    signed, [token] = _sent(ents)
    ents.contracts.open(token)
    ents.contracts.consent(token, consent_text="I agree", consent_version="1")
    ents.contracts.sign(token, typed_name="Ann")
    assert _why(ents, signed, token) is LinkClosed.SIGNED
    declined, [token] = _sent(ents)
    ents.contracts.decline(token, reason="no")
    assert _why(ents, declined, token) is LinkClosed.DECLINED
    other, [first, second] = _sent(ents, signers=2)
    ents.contracts.decline(second, reason="no")
    assert _why(ents, other, first) is LinkClosed.DECLINED_BY_OTHER
    voided, [token] = _sent(ents)
    ents.contracts.void(ACME, voided, actor="staff", reason="typo")
    assert _why(ents, voided, token) is LinkClosed.VOIDED
    replaced, [token] = _sent(ents)
    signer = ents.contracts.get(ACME, replaced).signers[0]
    ents.contracts.resend(ACME, replaced, signer.id, actor="staff")
    assert _why(ents, replaced, token) is LinkClosed.REPLACED
    link, [token] = _sent(ents)
    clock.advance(timedelta(days=8))  # the link ran out (7 days), the contract has not
    assert _why(ents, link, token) is LinkClosed.EXPIRED
    clock.advance(timedelta(days=3))
    assert _why(ents, link, token) is LinkClosed.EXPIRED
    assert LinkClosed.SIGNED.done_by_signer
    assert not LinkClosed.EXPIRED.done_by_signer
