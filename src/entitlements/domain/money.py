"""Money, done once: exact amounts until a line is rounded, once, half-even, to its
currency's minor unit.

The minor unit comes from the ISO 4217 data the ``iso4217`` package maintains (JPY has
none, EUR two, KWD and BHD three), never from a list kept here. Amounts are computed as
exact fractions — a share of a period is seconds over seconds — so nothing is lost
before the single rounding, and an invoice's total is the sum of its rounded lines.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import cache

from entitlements.errors import InvalidInput

__all__ = ["minor_unit", "round_money", "to_decimal"]


@cache
def minor_unit(currency: str) -> int:
    """The number of decimals of ``currency`` (ISO 4217); refuses codes without one (gold,
    testing codes) and unknown codes. The dataset is read on first use (it parses an
    XML table), not when the library is imported."""
    from iso4217 import Currency

    try:
        exponent = Currency(currency).exponent
    except ValueError:
        raise InvalidInput("currency", "is not an ISO 4217 currency code", currency) from None
    if exponent is None:
        raise InvalidInput("currency", "has no minor unit in ISO 4217 (not a money)", currency)
    return exponent


def round_money(amount: Fraction, currency: str) -> Decimal:
    """``amount`` rounded half-even to the minor unit of ``currency`` (the one rounding a
    line gets)."""
    places = minor_unit(currency)
    units = round(amount * 10**places)  # Fraction rounds half to even, exactly
    return Decimal(units).scaleb(-places)


def to_decimal(amount: Fraction, places: int = 12) -> Decimal:
    """An exact amount shown with ``places`` decimals (for reading unrounded amounts, never
    for billing)."""
    return Decimal(round(amount * 10**places)).scaleb(-places)
