"""Billing cycles: how a subscription's time is cut into periods.

Periods are computed from the anchor, never from the previous period, so month-end
clamping does not drift: anchored on Jan 31, the periods start Feb 29 (or 28), Mar 31,
Apr 30 and so on — each is the anchor plus k cycles, clamped to the month's length (as
python-dateutil's ``relativedelta`` adds months; done here by hand, since every renewal
and every read of a subscription computes a few of them).
"""

from __future__ import annotations

import enum
from calendar import monthrange
from datetime import datetime, timedelta

import attrs

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

    def _step(self) -> timedelta:
        return timedelta(days=self.every * (7 if self.unit is CycleUnit.WEEK else 1))

    def boundary(self, anchor: datetime, k: int) -> datetime:
        """Start of the k-th period counted from ``anchor`` (k may be negative)."""
        anchor = utc(anchor, "anchor")
        if self.unit in (CycleUnit.DAY, CycleUnit.WEEK):
            return anchor + k * self._step()
        return _plus_months(anchor, k * self.every * (12 if self.unit is CycleUnit.YEAR else 1))

    def _approximate_index(self, anchor: datetime, instant: datetime) -> int:
        if self.unit in (CycleUnit.DAY, CycleUnit.WEEK):
            return (instant - anchor) // self._step()
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


def _plus_months(instant: datetime, months: int) -> datetime:
    """``instant`` plus ``months`` calendar months, the day clamped to the month's length
    (Jan 31 plus one month is Feb 28 or 29), the time of day kept."""
    years, month = divmod(instant.month - 1 + months, 12)
    year = instant.year + years
    if not 1 <= year <= 9999:
        raise ValueError(f"year {year} is out of range")
    day = min(instant.day, monthrange(year, month + 1)[1])
    return instant.replace(year=year, month=month + 1, day=day)
