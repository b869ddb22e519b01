"""One definition of a trial's length: what a plan may say, a trial may run, and a trial
the plan defines is never refused later for its length."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import STORE_KINDS
from entitlements import Entitlements, InvalidInput, ManualClock, MemoryStore, Owner, Plan
from entitlements.domain.subscription import SubscriptionStatus

START = datetime(2026, 3, 1, 9, tzinfo=UTC)
ACME = Owner("organization", "acme")
MAX_TRIAL_DAYS = 3650  # ten years, as `entitlements.domain.plan.MAX_TRIAL_DAYS` says


@pytest.fixture(params=STORE_KINDS)
def store(request, make_store):
    return make_store(request.param)


def test_a_plan_without_a_trial_can_be_started_and_its_trial_ends_at_once(store):
    ents = Entitlements(store, clock=ManualClock(START))
    ents.plans.define(Plan("free", "Free", trial_days=0, status="active"), actor="staff")
    started = ents.subscriptions.start_trial(ACME, "free", actor="staff")
    assert started.trial_ends_at == START
    assert ents.subscriptions.get(ACME).status is SubscriptionStatus.EXPIRED
    assert ents.snapshot(ACME).status is SubscriptionStatus.EXPIRED
    ents.close()


@given(days=st.one_of(st.integers(-3, 3), st.integers(MAX_TRIAL_DAYS - 2, MAX_TRIAL_DAYS + 2)))
def test_a_plan_and_a_started_trial_accept_the_same_lengths(days):
    def plan_accepts() -> bool:
        try:
            Plan("p", "P", trial_days=days)
        except InvalidInput:
            return False
        return True

    ents = Entitlements(MemoryStore(), clock=ManualClock(START))
    ents.plans.define(Plan("p", "P", status="active"), actor="staff")
    refused: InvalidInput | None = None
    try:
        ents.subscriptions.start_trial(ACME, "p", actor="staff", trial_days=days)
    except InvalidInput as error:
        refused = error
    trial_accepts = refused is None
    if refused is not None:
        assert refused.field == "trial_days"
        assert ents.subscriptions.find(ACME) is None
    assert plan_accepts() == trial_accepts == (0 <= days <= MAX_TRIAL_DAYS)
