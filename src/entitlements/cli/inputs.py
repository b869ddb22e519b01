"""Values typed on the command line, checked as argparse reads them.

Each function raises ``argparse.ArgumentTypeError`` with a message for the person at the
terminal; argparse prefixes it with the option's name (``argument --expires-at: ...``),
so an error always says which part of the line is wrong.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from entitlements.domain.contracts.contract import SignerSpec
    from entitlements.domain.owner import Owner

__all__ = ["amount", "count", "instant", "owner", "reason", "signer", "whole_number"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SIGNER = re.compile(r"^\s*(?P<name>[^<]+?)\s*<(?P<email>[^>]+)>\s*(?:\((?P<role>[^)]*)\))?\s*$")


def instant(text: str) -> datetime:
    """``2027-01-01`` (midnight UTC) or a full ISO 8601 time; without an offset, UTC."""
    from datetime import UTC, datetime

    try:
        if _DATE.match(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date or time: {text!r} (write 2027-01-01, or 2027-01-01T09:30:00+02:00)"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def move_at(text: str) -> str | datetime:
    """When a migration moves each subscriber: ``now``, ``period_end`` (each at the end of
    its own current period) or a date or time (`instant`)."""
    if text in ("now", "period_end"):
        return text
    try:
        return instant(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"not now, period_end or a date or time: {text!r}"
            " (write period_end, 2027-01-01, or 2027-01-01T09:30:00+02:00)"
        ) from None


def reason(text: str) -> str:
    """Why, in words: kept in the audit trail, so never blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a reason (it is kept in the audit trail)")
    return text.strip()


def whole_number(text: str) -> int:
    try:
        return int(text.replace("_", ""), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def count(text: str) -> int:
    """A whole number of zero or more (seats, days)."""
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {value}")
    return value


def percentages(text: str) -> tuple[int, ...]:
    """Alert thresholds, comma-separated percentages (``80,100``; empty: none)."""
    return tuple(whole_number(part) for part in text.split(",") if part.strip())


def amount(text: str) -> Decimal:
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text)
    except InvalidOperation:
        hint = " (no thousands separators: write 1188.00)" if "," in text else ""
        raise argparse.ArgumentTypeError(f"not a decimal amount: {text!r}{hint}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite amount of zero or more, got {text!r}")
    return value


def owner(text: str) -> Owner:
    from entitlements.domain.owner import Owner
    from entitlements.errors import InvalidInput

    try:
        return Owner.parse(text)
    except InvalidInput as error:
        message = str(error).removeprefix("owner: ")
        raise argparse.ArgumentTypeError(f"{message} (got {text!r})") from None


def signer(text: str) -> SignerSpec:
    from entitlements.domain.contracts.contract import SignerSpec
    from entitlements.errors import InvalidInput

    match = _SIGNER.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"write signers as 'Name <email>' or 'Name <email> (role)', got {text!r}"
        )
    try:
        return SignerSpec(match["name"], match["email"], match["role"] or "")
    except InvalidInput as error:
        raise argparse.ArgumentTypeError(f"{error} in {text!r}") from None
