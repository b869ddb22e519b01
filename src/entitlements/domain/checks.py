"""Checks shared by the domain values: keys, counts and enum members, refused with an
`InvalidInput` that names the field instead of a bare ValueError."""

from __future__ import annotations

import enum
import re
from typing import TypeVar

from entitlements.errors import InvalidInput

__all__ = ["MAX_LIMIT", "check_count", "check_key", "parse_enum"]

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
MAX_LIMIT = 10**15
E = TypeVar("E", bound=enum.Enum)


def parse_enum(cls: type[E], value: object, field: str) -> E:
    """``cls(value)``, refusing unknown values with an error that lists the known ones."""
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(str(m.value) for m in cls)
        raise InvalidInput(field, f"must be one of: {known}", value) from None


def check_key(value: object, field: str) -> str:
    if not isinstance(value, str) or not _KEY.match(value):
        raise InvalidInput(
            field,
            "must be 1-64 characters of lowercase letters, digits, '_', '-' or '.', "
            "starting with a letter or digit",
            value,
        )
    return value


def check_count(value: object, field: str, *, maximum: int = MAX_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be a whole number, got {value!r}", value)
    if value < 0:
        raise InvalidInput(field, f"must not be negative, got {value}", value)
    if value > maximum:
        raise InvalidInput(field, f"must be at most {maximum}, got {value}", value)
    return value
