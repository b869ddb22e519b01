"""The owner search's index: the trigrams of each subscription row's owner id and
external id, each with the row it is found in (``ent_search_grams``).

A text search of three or more ASCII characters that no plan key holds reads the
postings of the needle's sparsest trigram, newest row first, and keeps the rows whose columns hold the needle (the
same test as the scan it replaces): a page costs what the page holds, not what the
tenant holds. Postings are written in the transaction of each row's write; one that no
longer holds (an external id changed) stays and is filtered out, so the postings are a
superset of the matches and never miss one. Each value is indexed as Python lowers it,
as SQLite's ``lower()`` does (ASCII letters only) and with its accents removed, so every
engine's ``lower(...) LIKE`` that matches finds the row among the postings; the gram
column compares as the external id does (MariaDB's default collation).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from entitlements.adapters.sql import tables as t

__all__ = ["GRAM", "INDEXED_BY", "grams", "needle_grams", "postings", "write_postings"]

GRAM = 3
INDEXED_BY = ("owner_id", "external_id")
"""The subscription columns the postings hold. The search looks in the plan key too, but
a text some plan key holds is found in a large share of the rows anyway, so it scans;
the plan keys are few, and a plan change writes no postings."""
_PROBED = 8
"""At most this many of the needle's trigrams are weighed to find the rarest."""


def _ascii_lower(value: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in value)


def _unaccented(value: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))


def grams(values: Iterable[str | None]) -> set[str]:
    """The trigrams a row holding ``values`` is found by."""
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        lowered = value.lower()
        for variant in {lowered, _ascii_lower(value), _unaccented(lowered)}:
            found.update(variant[i : i + GRAM] for i in range(len(variant) - GRAM + 1))
    return found


def needle_grams(needle: str) -> list[str] | None:
    """The trigrams to look a (lowered) needle up by; ``None``: the needle is too short or
    not ASCII, and the search scans instead."""
    if len(needle) < GRAM or not needle.isascii():
        return None
    found = sorted({needle[i : i + GRAM] for i in range(len(needle) - GRAM + 1)})
    if len(found) <= _PROBED:
        return found
    step = (len(found) - 1) / (_PROBED - 1)
    return sorted({found[round(i * step)] for i in range(_PROBED)})


def postings(rows: Iterable[tuple[str, int, Sequence[str | None]]]) -> list[dict[str, Any]]:
    """The posting rows of (tenant, subscription pk, indexed values)."""
    return [
        {"tenant": tenant, "gram": gram, "sub_pk": pk}
        for tenant, pk, values in rows
        for gram in sorted(grams(values))
    ]


def _insert_ignoring_duplicates(connection: sa.Connection) -> sa.Insert:
    g = t.search_grams
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(g).on_conflict_do_nothing()
    if dialect == "sqlite":
        return g.insert().prefix_with("OR IGNORE")
    return g.insert().prefix_with("IGNORE")


def write_postings(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (as `postings` makes them); those already there are kept."""
    if rows:
        connection.execute(_insert_ignoring_duplicates(connection), rows)
