"""Checks at the public boundary: every value a host hands the library is checked here for
type and range before it reaches a store, and refused with an `InvalidInput` that names
the field.

One home so that every store sees the same input: a store must never be the first to
notice a list where a key belongs (the memory store would raise ``TypeError``, SQLite a
driver error, another engine might even accept it). Text is refused when a database
could not store it as given — lone surrogates, NUL and other control characters — or when
it is longer than the column that keeps it.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from entitlements.errors import InvalidInput

__all__ = [
    "MAX_COUNT",
    "MAX_LIMIT",
    "check_bool",
    "check_count",
    "check_currency",
    "check_document",
    "check_duration",
    "check_id",
    "check_instance",
    "check_key",
    "check_matching",
    "check_optional_count",
    "check_optional_id",
    "check_optional_label",
    "check_optional_text",
    "check_reason",
    "check_text",
    "check_version",
    "parse_enum",
]

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# identifiers: no control characters at all; free text keeps tab and line breaks
_NOT_IN_ID = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NOT_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_LIMIT = 10**15
MAX_COUNT = 2**31 - 1
"""Counts kept in 32-bit columns (seats, days, versions)."""
MAX_DOCUMENT = 64_000
E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")


def parse_enum(cls: type[E], value: object, field: str) -> E:
    """``cls(value)``, refusing unknown values with an error that lists the known ones."""
    try:
        return cls(value)
    except (ValueError, TypeError):
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


def check_matching(value: object, pattern: re.Pattern[str], field: str, rule: str) -> str:
    """A string ``pattern`` matches; `InvalidInput` saying ``rule`` otherwise."""
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidInput(field, rule, value)
    return value


def check_currency(value: object, field: str) -> str:
    """An ISO 4217 currency code, as prices, contracts and invoices name it."""
    return check_matching(
        value, _CURRENCY, field, "must be an ISO 4217 code such as 'EUR' or 'USD'"
    )


def check_count(value: object, field: str, *, maximum: int = MAX_LIMIT, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be a whole number, got {_shown(value)}", value)
    if value < minimum:
        what = "negative" if minimum == 0 else f"less than {minimum}"
        raise InvalidInput(field, f"must not be {what}, got {value}", value)
    if value > maximum:
        raise InvalidInput(field, f"must be at most {maximum}, got {value}", value)
    return value


def check_optional_count(
    value: object, field: str, *, maximum: int = MAX_LIMIT, minimum: int = 0
) -> int | None:
    return None if value is None else check_count(value, field, maximum=maximum, minimum=minimum)


def check_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, f"must be True or False, got {_shown(value)}", value)
    return value


def _bounded(value: str, field: str, max_length: int, forbidden: re.Pattern[str]) -> str:
    """The two checks every stored string shares: its length, and the characters
    ``forbidden`` for its kind (identifiers refuse every control character, text keeps
    line breaks and tabs)."""
    if len(value) > max_length:
        raise InvalidInput(field, f"must be at most {max_length} characters", value)
    if forbidden.search(value):
        raise InvalidInput(
            field, "must not contain control characters or unpaired surrogates", value
        )
    return value


def check_id(value: object, field: str, *, max_length: int = 255, padded: bool = False) -> str:
    """An identifier the host chose (an owner id, a member, a reservation id): non-empty,
    one line, no control characters, and — unless ``padded`` (a title, a user agent:
    stored, never looked up) — no spaces around it, since MariaDB compares ``"acme "``
    and ``"acme"`` as equal and the other stores do not."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, f"must be a non-empty string, got {_shown(value)}", value)
    if not padded and (value[0].isspace() or value[-1].isspace()):
        raise InvalidInput(field, "must not begin or end with a space", value)
    return _bounded(value, field, max_length, _NOT_IN_ID)


def check_optional_id(
    value: object, field: str, *, max_length: int = 255, padded: bool = False
) -> str | None:
    if value is None:
        return None
    return check_id(value, field, max_length=max_length, padded=padded)


def check_text(
    value: object, field: str, *, max_length: int = 2000, allow_empty: bool = True
) -> str:
    """Free text for people (a reason, notes): line breaks and tabs are fine, other
    control characters and unpaired surrogates are not (no database stores them alike)."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be text, got {_shown(value)}", value)
    if not allow_empty and not value.strip():
        raise InvalidInput(field, "must not be empty", value)
    return _bounded(value, field, max_length, _NOT_IN_TEXT)


def check_optional_text(value: object, field: str, *, max_length: int = 2000) -> str | None:
    return None if value is None else check_text(value, field, max_length=max_length)


def check_optional_label(value: object, field: str, *, example: str, max_length: int) -> str | None:
    """``None``, or a short label staff read and type (a contract's term, the plan
    manager's member id): blank says nothing, so it is refused like a wrong type, with
    ``example`` showing what fits."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, f"must be {example} or None, got {_shown(value)}", value)
    return _bounded(value, field, max_length, _NOT_IN_TEXT)


def check_reason(value: object) -> str | None:
    """Why a change was made, kept with its audit event."""
    return check_optional_text(value, "reason", max_length=2000)


def check_version(value: object, field: str = "version") -> int | None:
    """A plan version or a record revision the caller names (``None``: the latest)."""
    return check_optional_count(value, field, minimum=0, maximum=MAX_COUNT)


def check_instance(value: object, cls: type[T], field: str) -> T:
    if not isinstance(value, cls):
        raise InvalidInput(field, f"must be a {cls.__name__}, got {_shown(value)}", value)
    return value


def check_many(value: object, field: str, what: str) -> list[Any]:
    """The items of a collection a batch call takes (a list, a tuple, a generator): a
    single item or ``None`` where many were expected is a mistake to name, not to iterate."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise InvalidInput(field, f"must be a collection of {what}, got {_shown(value)}", value)
    return list(value)


def check_duration(
    value: object,
    field: str,
    *,
    minimum: timedelta = timedelta(0),
    maximum: timedelta = timedelta(days=36_500),
) -> timedelta:
    if not isinstance(value, timedelta):
        raise InvalidInput(field, f"must be a timedelta, got {_shown(value)}", value)
    if not minimum <= value <= maximum:
        raise InvalidInput(field, f"must be between {minimum} and {maximum}", value)
    return value


def check_document(value: object, field: str) -> dict[str, Any]:
    """A JSON object the host attaches (metadata): string keys; values that every
    database's JSON keeps exactly (no NaN or infinity, no unpaired surrogates)."""
    if not isinstance(value, Mapping):
        raise InvalidInput(field, f"must be a mapping, got {_shown(value)}", value)
    size = _document_size(value, field, 0)
    if size > MAX_DOCUMENT:
        raise InvalidInput(field, f"must be at most {MAX_DOCUMENT} characters as JSON", value)
    return dict(value)


def _document_size(value: object, field: str, depth: int) -> int:
    """About how many characters ``value`` takes as JSON, checking it on the way."""
    if depth > 16:
        raise InvalidInput(field, "is nested too deeply", value)
    if isinstance(value, Mapping):
        return _object_size(value, field, depth)
    if isinstance(value, list | tuple):
        return 2 + sum(_document_size(item, field, depth + 1) + 1 for item in value)
    return _scalar_size(value, field)


def _object_size(value: Mapping[Any, Any], field: str, depth: int) -> int:
    total = 2
    for key, item in value.items():
        total += len(check_text(key, f"{field} key", max_length=255)) + 3
        total += _document_size(item, field, depth + 1)
    return total


def _scalar_size(value: object, field: str) -> int:
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        if abs(value) > 2**53:
            raise InvalidInput(field, "numbers must be within ±2**53", value)
        return 20
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(field, "numbers must be finite (no NaN or infinity)", value)
        return 25
    if isinstance(value, str):
        return len(check_text(value, field, max_length=MAX_DOCUMENT)) + 2
    raise InvalidInput(field, f"must hold only JSON values, not {type(value).__name__}", value)


def _shown(value: object) -> str:
    if isinstance(value, str | int | float | bool | datetime) or value is None:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return type(value).__name__
