"""The change feed's vocabulary: what a committed write touched, so that every process
holding cached answers knows what to drop.

A write that changes what an owner is entitled to is a ``terms`` change (its snapshots
and usage decisions go); one that only moves a counter is a ``usage`` change (its usage
decisions go); a plan definition is a ``catalog`` change (everything goes: owners pin
versions, but the fallback plan and plan statuses are read at their latest).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from entitlements.domain.owner import Owner

__all__ = ["Change", "ChangeKind", "FeedPage"]


class ChangeKind(enum.StrEnum):
    TERMS = "terms"
    USAGE = "usage"
    CATALOG = "catalog"


@attrs.frozen
class Change:
    """One entry of the feed: ``seq`` orders entries; ``owner`` is ``None`` for a
    catalog change, which concerns every owner of every tenant."""

    seq: int
    kind: ChangeKind
    owner: Owner | None = None


@attrs.frozen
class FeedPage:
    """What a follower reads at once: the entries it asked for and how far the feed has
    been pruned (a follower behind that point has missed entries and must start over)."""

    changes: Sequence[Change]
    pruned_through: int
    head: int
