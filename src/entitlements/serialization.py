"""Turning domain values into JSON documents and back (audit before/after, SQL JSON
columns, catalogs, certificates).

The library keeps its own cattrs converter — never the global one, so a host's hooks
and ours cannot collide. ``make_converter()`` gives hosts a fresh copy to extend.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import cattrs

from entitlements.domain.instant import utc
from entitlements.domain.owner import Owner

__all__ = ["converter", "make_converter", "to_document"]


def _frozenset_unstructure(value: frozenset[Any]) -> list[Any]:
    return sorted(converter.unstructure(v) for v in value)


def make_converter() -> cattrs.Converter:
    """A converter that turns every domain value into plain JSON types: datetimes as ISO
    8601 UTC strings, Decimals as strings (never floats), exact fractions as
    ``"numerator/denominator"``, sets as sorted lists."""
    c = cattrs.Converter()
    c.register_unstructure_hook(datetime, lambda v: utc(v).isoformat())
    c.register_structure_hook(datetime, lambda v, _: utc(datetime.fromisoformat(v)))
    c.register_unstructure_hook(Decimal, str)
    c.register_unstructure_hook(Fraction, lambda v: f"{v.numerator}/{v.denominator}")
    c.register_structure_hook(Fraction, lambda v, _: Fraction(v))
    c.register_structure_hook(
        Decimal, lambda v, _: Decimal(str(v)) if not isinstance(v, float) else Decimal(repr(v))
    )
    c.register_unstructure_hook(timedelta, lambda v: v.total_seconds())
    c.register_structure_hook(timedelta, lambda v, _: timedelta(seconds=v))
    c.register_unstructure_hook_func(
        lambda t: getattr(t, "__origin__", t) is frozenset,
        lambda v: sorted(c.unstructure(x) for x in v),
    )
    c.register_unstructure_hook(Owner, lambda o: {"kind": o.kind, "id": o.id, "tenant": o.tenant})
    return c


converter = make_converter()


def to_document(value: Any) -> Mapping[str, Any]:
    document: Mapping[str, Any] = converter.unstructure(value)
    return document
