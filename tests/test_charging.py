"""The charging kernel (`entitlements.domain.usage`): the hard-limit ceiling, the
over-limit facts and the key-reuse rule, decided once for consume, batches,
reservations and gauges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitlements import (
    Entitlements,
    IdempotencyKeyReused,
    InvalidInput,
    Limit,
    LimitKind,
    ManualClock,
    MemoryStore,
    Owner,
    Plan,
)
from entitlements.domain.usage import (
    Counter,
    Reservation,
    UsageRecord,
    charge,
    charged,
    within,
)

ACME = Owner("organization", "acme")
START = datetime(2026, 5, 4, 9, tzinfo=UTC)
LIMIT = 10
PLAN = Plan(
    "pro",
    "Pro",
    limits={
        "hard": Limit(LIMIT, kind=LimitKind.METERED),
        "soft": Limit(LIMIT, kind=LimitKind.METERED, enforcement="soft"),
        "open": Limit.unlimited(kind=LimitKind.METERED),
        "seats": Limit(3, kind=LimitKind.SEATS),
    },
    status="active",
)


def _snapshot():
    ents = Entitlements(MemoryStore(), clock=ManualClock(START))
    ents.plans.define(PLAN, actor="staff")
    ents.subscriptions.subscribe(ACME, "pro", actor="staff")
    return ents.snapshot(ACME)


SNAPSHOT = _snapshot()
amounts = st.integers(min_value=0, max_value=3 * LIMIT)


@given(
    metric=st.sampled_from(["hard", "soft", "open"]),
    used=amounts,
    reserved=amounts,
    amount=st.integers(min_value=1, max_value=3 * LIMIT),
)
def test_the_ceiling_is_the_hard_limit_and_nothing_else(metric, used, reserved, amount):
    wanted = charge(SNAPSHOT, metric, amount)
    ceiling = wanted.terms.ceiling
    assert ceiling == (LIMIT if metric == "hard" else None)
    period = wanted.terms.period_start
    decision = wanted.against(Counter(ACME, metric, period, used, reserved))
    # what the decision allows is what a store counting under the ceiling accepts
    if metric == "hard":
        assert decision.allowed == within(ceiling, used + amount, reserved)
    else:
        assert decision.allowed
    # refused whatever the counter holds only when the amount alone passes the ceiling
    assert wanted.denied == (metric == "hard" and amount > LIMIT)


@given(metric=st.sampled_from(["hard", "soft", "open"]), used=amounts, reserved=amounts)
def test_over_limit_is_reported_exactly_when_the_count_passes_the_limit(metric, used, reserved):
    wanted = charge(SNAPSHOT, metric, 1)
    after = Counter(ACME, metric, wanted.terms.period_start, used, reserved)
    result = charged(wanted, after)
    assert result.requested == 1
    assert (result.used, result.reserved) == (used, reserved)
    assert result.over_limit == (metric != "open" and used + reserved > LIMIT)
    assert not result.duplicate


@given(
    amount=st.integers(min_value=1, max_value=5),
    earlier_amount=st.integers(min_value=1, max_value=5),
    earlier_metric=st.sampled_from(["hard", "soft"]),
)
def test_a_key_answers_a_retry_and_refuses_another_charge(amount, earlier_amount, earlier_metric):
    wanted = charge(SNAPSHOT, "hard", amount, "k-1")
    period = wanted.terms.period_start
    earlier = UsageRecord("r1", ACME, earlier_metric, earlier_amount, period, START, "k-1")
    counter = Counter(ACME, earlier_metric, period, earlier_amount)
    if (earlier_metric, earlier_amount) == ("hard", amount):
        assert wanted.reused_by(earlier) is None
        result = charged(wanted, counter, earlier)
        assert result.duplicate
        assert result.requested == amount
    else:
        assert isinstance(wanted.reused_by(earlier), IdempotencyKeyReused)
        with pytest.raises(IdempotencyKeyReused) as raised:
            charged(wanted, counter, earlier)
        assert raised.value.key == "k-1"


def test_a_reservations_key_reuse_names_reservations():
    wanted = charge(SNAPSHOT, "hard", 2, "job-7")
    held = Reservation("r1", ACME, "hard", 3, wanted.terms.period_start, START, START, key="job-7")
    error = wanted.reused_by(held, "a reservation of ")
    assert error is not None
    assert "a reservation of 3 hard" in str(error)
    assert "a reservation of 2 hard" in str(error)


def test_seats_are_never_charged_and_never_counted_inline():
    wanted = charge(SNAPSHOT, "seats", 1)
    assert not wanted.terms.plain
    with pytest.raises(InvalidInput, match=r"assign them with ents\.seats\.assign"):
        wanted.refuse_seats()


def test_a_plain_charge_is_one_the_store_decides_alone():
    assert charge(SNAPSHOT, "hard", 1).terms.plain
    assert charge(SNAPSHOT, "open", 1).terms.plain
    assert not charge(SNAPSHOT, "soft", 1).terms.plain  # passing it must be audited
