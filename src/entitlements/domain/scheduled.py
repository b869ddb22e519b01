"""Scheduled changes and pauses: what is to happen to a subscription later, kept as data.

A `PendingChange` is a future stretch of the subscription's timeline: a change of plan,
seats or add-ons, a cancellation at the period end, or a pause, each with the instant it
takes effect, who asked for it, why, and the revision of the subscription it was asked
against. A subscription holds at most one. Until its instant nothing is in force; from
its instant on every reading of the subscription (`entitlements.domain.due.as_of`)
applies it, whether or not the sweep has stored it; canceling it drops the future and
touches nothing that was in force.

A `Pause` is a pause in force: since when, until when (or indefinitely), and whether the
billing period restarts when it ends.

This module holds the values and the rules about them (one pending change, conflicts
with a pause, "equal to what is in force anyway"); `entitlements.domain.due` applies a
due one, and `entitlements.domain.lifecycle` composes them with the transition table.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

import attrs

from entitlements.domain.addon import AddOn
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.checks import parse_enum
from entitlements.domain.instant import (
    as_utc,
    aware,
    optional_instant,
)
from entitlements.errors import InvalidInput

__all__ = ["Pause", "PendingChange", "PendingKind"]


class PendingKind(enum.StrEnum):
    """What a pending change does when its instant comes."""

    CHANGE = "change"
    """Change the plan (or version), the seats or the add-ons."""
    CANCEL = "cancel"
    """Cancel at the end of the period (``cancel(at_period_end=True)``)."""
    PAUSE = "pause"
    """Pause the subscription (``pause(at=...)``)."""


def _kind(value: object) -> PendingKind:
    return parse_enum(PendingKind, value, "kind")


def _addons(value: Iterable[AddOn] | None) -> tuple[AddOn, ...] | None:
    if value is None:
        return None
    addons = tuple(value)
    if not all(isinstance(a, AddOn) for a in addons):
        raise InvalidInput("addons", "must be AddOn values", value)
    return tuple(sorted(addons, key=lambda a: a.key))


@attrs.frozen
class PendingChange:
    """One change to a subscription that takes effect at ``at``: the request, as data."""

    kind: PendingKind = attrs.field(converter=_kind)
    """Change, cancellation at period end, or pause."""
    at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it takes effect (for a cancellation: the period's, or trial's, end)."""
    requested_at: datetime | None = optional_instant()
    """When it was asked for (``None`` for a cancellation at period end, which the audit
    trail dates)."""
    requested_by: str | None = None
    """Who asked for it (the actor's id)."""
    reason: str | None = None
    """Why, as the requester said it."""
    request_revision: int | None = None
    """The subscription's revision the request was made against: the audit facts of its
    outcome name it, so a reader can tie the outcome to the request."""
    plan_key: str | None = None
    """The plan to move to (``None``: the plan held)."""
    plan_version: int | None = None
    """The plan version to move to, fixed when scheduled."""
    seats: int | None = None
    """The seats to hold (``None``: unchanged)."""
    addons: tuple[AddOn, ...] | None = attrs.field(default=None, converter=_addons)
    """The add-ons to hold (``None``: unchanged)."""
    cycle: BillingCycle | None = None
    """The billing cycle of the plan moved to, when it differs from the held one."""
    resume_at: datetime | None = optional_instant()
    """A pause's end (``None``: until unpaused)."""
    restart_period: bool = False
    """A pause: whether the billing period restarts on unpause (``False``: it keeps its
    anchor)."""
    if_over_quota: str = "refuse"
    """What the change does when, at its instant, usage passes a lowered limit:
    ``refuse`` (it fails) or ``allow`` (it applies and reports)."""

    def describe(self) -> str:
        """The change in words, for errors and the console."""
        when = f"{self.at:%Y-%m-%d %H:%M}"
        if self.kind is PendingKind.CANCEL:
            return f"a cancellation at {when}"
        if self.kind is PendingKind.PAUSE:
            until = "" if self.resume_at is None else f" until {self.resume_at:%Y-%m-%d %H:%M}"
            return f"a pause from {when}{until}"
        parts = []
        if self.plan_key is not None:
            parts.append(f"plan {self.plan_key} v{self.plan_version}")
        if self.seats is not None:
            parts.append(f"{self.seats} seats")
        if self.addons is not None:
            parts.append("add-ons " + (", ".join(a.key for a in self.addons) or "none"))
        return f"a change to {', '.join(parts)} at {when}"


@attrs.frozen
class Pause:
    """A pause in force: the customer asked to stop for a while (apart from a staff
    suspension, which may hold at the same time)."""

    since: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it began."""
    until: datetime | None = optional_instant()
    """When it ends by itself (``None``: until unpaused)."""
    restart_period: bool = False
    """Whether the billing period restarts on unpause (``False``: it keeps its anchor)."""
    requested_by: str | None = None
    """Who asked for it."""
    reason: str | None = None
    """Why."""

    def describe(self) -> str:
        """The pause in words, for errors and the console."""
        until = "" if self.until is None else f" until {self.until:%Y-%m-%d %H:%M}"
        return f"a pause since {self.since:%Y-%m-%d %H:%M}{until}"
