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
    """What an entry invalidates: an owner's ``terms`` (its snapshot), its ``usage`` (cached
    usage decisions only), or the ``catalog`` (everything)."""

    TERMS = "terms"
    USAGE = "usage"
    CATALOG = "catalog"


@attrs.frozen
class Change:
    """One entry of the feed: ``seq`` orders entries; ``owner`` is ``None`` for a
    catalog change, which concerns every owner of every tenant."""

    seq: int
    """The feed position; followers ask for what came after the last one they saw."""
    kind: ChangeKind
    """Decides how much a follower drops."""
    owner: Owner | None = None
    """The owner touched (``None``: every owner)."""


@attrs.frozen
class FeedPage:
    """What a follower reads at once: the entries it asked for and how far the feed has
    been pruned (a follower behind that point has missed entries and must start over)."""

    changes: Sequence[Change]
    """The entries after the position asked for, in order."""
    pruned_through: int
    """Entries up to this position were pruned by the sweep."""
    head: int
    """The last position handed out when the page was read."""
