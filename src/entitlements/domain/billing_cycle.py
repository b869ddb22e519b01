"""Billing cycles: how a subscription's time is cut into periods.

Periods are computed from the anchor, never from the previous period, so month-end
clamping does not drift: anchored on Jan 31, the periods start Feb 29 (or 28), Mar 31,
Apr 30 and so on — each is the anchor plus k cycles, clamped to the month's length by
python-dateutil's ``relativedelta``.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import attrs
from dateutil.relativedelta import relativedelta

from entitlements.domain.checks import parse_enum
from entitlements.domain.instant import Period, utc
from entitlements.errors import InvalidInput

__all__ = ["BillingCycle", "CycleUnit"]

_MAX_EVERY = 1000


class CycleUnit(enum.StrEnum):
    """The calendar unit a billing cycle counts in."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


def _unit(value: object) -> CycleUnit:
    return parse_enum(CycleUnit, value, "billing_cycle.unit")


def _every(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_EVERY:
        raise InvalidInput(
            "billing_cycle.every", f"must be a whole number from 1 to {_MAX_EVERY}", value
        )
    return value


@attrs.frozen
class BillingCycle:
    """Every ``every`` ``unit``s: monthly is ``BillingCycle(CycleUnit.MONTH)``."""

    unit: CycleUnit = attrs.field(converter=_unit)
    """The calendar unit periods are counted in."""
    every: int = attrs.field(default=1, converter=_every)
    """How many units one period lasts (``every=3`` months: quarterly)."""

    @classmethod
    def monthly(cls) -> BillingCycle:
        """One calendar month per period, anchored at the subscription's start (the 31st
        falls back to the month's last day)."""
        return cls(CycleUnit.MONTH)

    @classmethod
    def annual(cls) -> BillingCycle:
        """One year per period."""
        return cls(CycleUnit.YEAR)

    def __str__(self) -> str:
        return f"every {self.every} {self.unit.value}{'s' if self.every != 1 else ''}"

    def _offset(self, k: int) -> timedelta | relativedelta:
        n = k * self.every
        if self.unit is CycleUnit.DAY:
            return timedelta(days=n)
        if self.unit is CycleUnit.WEEK:
            return timedelta(weeks=n)
        if self.unit is CycleUnit.MONTH:
            return relativedelta(months=n)
        return relativedelta(years=n)

    def boundary(self, anchor: datetime, k: int) -> datetime:
        """Start of the k-th period counted from ``anchor`` (k may be negative)."""
        return utc(anchor, "anchor") + self._offset(k)

    def _approximate_index(self, anchor: datetime, instant: datetime) -> int:
        if self.unit in (CycleUnit.DAY, CycleUnit.WEEK):
            step = self._offset(1)
            assert isinstance(step, timedelta)
            return (instant - anchor) // step
        months = (instant.year - anchor.year) * 12 + (instant.month - anchor.month)
        per = self.every * (12 if self.unit is CycleUnit.YEAR else 1)
        return months // per

    def period_containing(self, anchor: datetime, instant: datetime) -> Period:
        """The period ``[start, end)`` that ``instant`` falls in, for a cycle anchored at
        ``anchor``; instants before the anchor fall in earlier periods."""
        anchor = utc(anchor, "anchor")
        instant = utc(instant, "instant")
        k = self._approximate_index(anchor, instant)
        while self.boundary(anchor, k) > instant:
            k -= 1
        while self.boundary(anchor, k + 1) <= instant:
            k += 1
        return Period(self.boundary(anchor, k), self.boundary(anchor, k + 1))

    def next_period(self, anchor: datetime, period: Period) -> Period:
        """The period after ``period``, counted from ``anchor`` so that short months do not
        drift the day."""
        return self.period_containing(anchor, period.end)
