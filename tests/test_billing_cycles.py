"""Billing cycles: anchored periods, month-end clamping, tiling (properties)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitlements import BillingCycle, CycleUnit, InvalidInput, NaiveDatetime

ANCHOR_DAYS = st.sampled_from([1, 15, 28, 29, 30, 31])


@st.composite
def anchors(draw):
    year = draw(st.integers(2019, 2030))
    month = draw(st.integers(1, 12))
    day = draw(ANCHOR_DAYS)
    for candidate in range(day, 0, -1):
        try:
            return datetime(
                year,
                month,
                candidate,
                draw(st.integers(0, 23)),
                draw(st.integers(0, 59)),
                tzinfo=UTC,
            )
        except ValueError:
            continue
    raise AssertionError("unreachable")


cycles = st.builds(BillingCycle, st.sampled_from(list(CycleUnit)), st.integers(1, 13))
instants = st.integers(-3 * 365 * 86400, 6 * 365 * 86400).map(
    lambda s: datetime(2024, 2, 29, tzinfo=UTC) + timedelta(seconds=s)
)


def test_month_end_clamping_keeps_the_anchor():
    monthly = BillingCycle.monthly()
    anchor = datetime(2024, 1, 31, tzinfo=UTC)
    starts = [monthly.boundary(anchor, k).date().isoformat() for k in range(5)]
    assert starts == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"]
    leap = BillingCycle.annual()
    assert leap.boundary(datetime(2024, 2, 29, tzinfo=UTC), 1).date().isoformat() == "2025-02-28"
    assert leap.boundary(datetime(2024, 2, 29, tzinfo=UTC), 4).date().isoformat() == "2028-02-29"


@given(cycles, anchors(), instants)
def test_every_instant_falls_in_exactly_one_period(cycle, anchor, instant):
    period = cycle.period_containing(anchor, instant)
    assert period.start <= instant < period.end
    before = cycle.period_containing(anchor, period.start - timedelta(microseconds=1))
    after = cycle.period_containing(anchor, period.end)
    assert before.end == period.start
    assert after.start == period.end


@given(cycles, anchors(), st.integers(-30, 30))
def test_periods_tile_time_without_gaps_or_overlaps(cycle, anchor, k):
    periods = [cycle.period_containing(anchor, cycle.boundary(anchor, i)) for i in range(k, k + 6)]
    for earlier, later in itertools.pairwise(periods):
        assert earlier.end == later.start
        assert earlier.start < earlier.end
    assert periods[0].start == cycle.boundary(anchor, k)


@given(cycles, anchors())
def test_every_period_starts_on_the_anchor_or_its_clamped_day(cycle, anchor):
    if cycle.unit not in (CycleUnit.MONTH, CycleUnit.YEAR):
        return
    for k in range(24):
        start = cycle.boundary(anchor, k)
        assert start.time() == anchor.time()
        assert start.day == anchor.day or start.day < anchor.day  # clamped, never later


def test_bad_cycles_and_naive_times_are_refused():
    with pytest.raises(InvalidInput):
        BillingCycle("fortnight")
    with pytest.raises(InvalidInput):
        BillingCycle(CycleUnit.DAY, 0)
    with pytest.raises(NaiveDatetime):
        BillingCycle.monthly().period_containing(
            datetime(2024, 1, 1), datetime(2024, 2, 1, tzinfo=UTC)
        )


@given(anchors(), st.integers(-400, 400), st.sampled_from([CycleUnit.MONTH, CycleUnit.YEAR]))
def test_month_and_year_boundaries_are_relativedeltas_calendar_arithmetic(anchor, k, unit):
    """Boundaries are computed by hand (every renewal computes a few): the same instants
    as python-dateutil's month and year steps, clamped to the month's length."""
    from dateutil.relativedelta import relativedelta

    every = 1 if k % 3 else 2
    step = relativedelta(months=k * every) if unit is CycleUnit.MONTH else None
    expected = anchor + (step if step is not None else relativedelta(years=k * every))
    assert BillingCycle(unit, every).boundary(anchor, k) == expected
