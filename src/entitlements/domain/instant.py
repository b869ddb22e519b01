"""Time as the domain sees it: aware UTC datetimes, passed in, never read from a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from entitlements.errors import InvalidInput, NaiveDatetime

__all__ = ["Period", "utc"]


def utc(value: datetime, field: str = "datetime") -> datetime:
    """Return ``value`` in UTC, refusing naive datetimes.

    A naive datetime is ambiguous (whose midnight?); guessing would move trials and
    billing periods by hours, so the library refuses instead of assuming.
    """
    if not isinstance(value, datetime):
        raise InvalidInput(field, f"expected a datetime, got {type(value).__name__}", value)
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetime(field, value)
    if value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(field, "is out of range", value) from None


EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)


def in_range(value: datetime, field: str) -> datetime:
    """Dates every database keeps and that periods can be computed from (years 1900 to
    2999): year 1 or 9999 is a sentinel or a typo, and adding a period to it overflows."""
    if not EARLIEST <= value <= LATEST:
        raise InvalidInput(field, "must be between the years 1900 and 2999", value)
    return value


def given_utc(value: datetime, field: str) -> datetime:
    """A time the host passes in (``now=``, ``expires_at=``): `utc`, within range."""
    return in_range(utc(value, field), field)


def optional_given_utc(value: datetime | None, field: str) -> datetime | None:
    return None if value is None else given_utc(value, field)


def optional_utc(value: datetime | None, field: str) -> datetime | None:
    return None if value is None else utc(value, field)


def as_utc(value: datetime) -> datetime:
    """attrs converter: aware datetimes to UTC; anything else is left for `aware` to refuse."""
    if isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise InvalidInput("datetime", "is out of range", value) from None
    return value


def as_optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def optional_instant() -> Any:
    """An attrs field for an instant that may be missing (``None`` by default): aware,
    kept in UTC."""
    return attrs.field(default=None, converter=as_optional_utc, validator=optional_aware)


def aware(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: refuse naive datetimes, naming the field."""
    if not isinstance(value, datetime):
        raise InvalidInput(
            attribute.name, f"expected a datetime, got {type(value).__name__}", value
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetime(attribute.name, value)


def optional_aware(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        aware(instance, attribute, value)


def optional_given(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator for a time the host chose (an expiry): aware and within range."""
    if value is not None:
        aware(instance, attribute, value)
        in_range(value, attribute.name)  # type: ignore[arg-type]


@attrs.frozen
class Period:
    """A half-open span of time ``[start, end)``: every instant belongs to exactly one of
    a sequence of adjacent periods."""

    start: datetime = attrs.field(converter=as_utc, validator=aware)
    """The first instant in the period."""
    end: datetime = attrs.field(converter=as_utc, validator=aware)
    """The first instant after the period (periods are half-open, so consecutive ones never
    overlap)."""

    def __attrs_post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidInput("period", f"end {self.end} must be after start {self.start}")

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    @property
    def length(self) -> timedelta:
        """How long the period lasts (months and years vary in length)."""
        return self.end - self.start
