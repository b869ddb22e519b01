"""Alert thresholds on limits: when a usage change crosses one, and what makes two
crossings the same fact.

A threshold is a percentage of the limit in force. It is crossed when usage goes from
below its mark to at or above it (`crossed`); landing exactly on the mark crosses. The
notification's key (`threshold_key`) names the owner's metric, period, limit value and
threshold, and the outbox keeps one row per key: so each threshold notifies once per
period, usage that hovers around a mark notifies once, and a raised limit — new marks —
arms the thresholds again.
"""

from __future__ import annotations

import enum
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from entitlements.domain.checks import check_count
from entitlements.errors import InvalidInput

__all__ = [
    "MAX_ALERT",
    "Notice",
    "NotificationKind",
    "Thresholds",
    "check_alerts",
    "check_lead_days",
    "crossed",
    "mark",
    "threshold_key",
    "threshold_kind",
    "threshold_notices",
]

MAX_ALERT = 1000
"""The largest alert threshold, in percent of the limit (past 100 only a soft limit can
go)."""


class NotificationKind(enum.StrEnum):
    """What a notification is about."""

    USAGE_THRESHOLD = "usage.threshold"
    LIMIT_REACHED = "usage.limit_reached"
    SEATS_FULL = "seats.full"
    PLAN_CHANGED = "subscription.plan_changed"
    TRIAL_CONVERTED = "subscription.trial_converted"
    TRIAL_ENDING = "trial.ending"
    TRIAL_ENDED = "trial.ended"
    CONTRACT_UNSIGNED = "contract.unsigned"
    SIGNING_LINK_EXPIRING = "contract.link_expiring"
    CHANGE_APPLIED = "change.applied"
    """A scheduled change took effect."""
    CHANGE_FAILED = "change.failed"
    """A scheduled change could not take effect (the facts say why)."""
    INVOICE_FINALIZED = "invoice.finalized"
    """An invoice was issued."""
    INVOICE_DUE = "invoice.due"
    """An invoice falls due in N days."""
    INVOICE_OVERDUE = "invoice.overdue"
    """An invoice is past due."""
    PAUSE_ENDING = "pause.ending"
    """A pause ends in N days."""


def check_alerts(value: object, field: str = "limit.alerts") -> tuple[int, ...]:
    """Alert thresholds are whole percentages of the limit, 1 to `MAX_ALERT`; kept sorted
    and without repeats so that equal terms compare (and hash) equal."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput(field, "must be a list of percentages, such as (80, 100)", value)
    found = sorted({check_count(p, field, minimum=1, maximum=MAX_ALERT) for p in value})
    return tuple(found)


def check_lead_days(value: object, field: str) -> tuple[int, ...]:
    """How many days ahead (or after) the host wants to hear of a date: whole days, 1 to
    365, sorted, no repeats; empty turns the notification off."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput(field, "must be a list of whole days, such as (7, 1)", value)
    return tuple(sorted({check_count(d, field, minimum=1, maximum=365) for d in value}))


def mark(percent: int, limit: int) -> int:
    """The usage at which ``percent`` of ``limit`` is reached: the smallest whole number
    of units at or above it (80% of 1,000 is 800; 80% of 7 is 6)."""
    return math.ceil(percent * limit / 100)


def crossed(alerts: tuple[int, ...], limit: int | None, before: int, after: int) -> tuple[int, ...]:
    """The thresholds a usage change crosses: those whose mark ``before`` was below and
    ``after`` is at or above. Landing exactly on the mark crosses; going down crosses
    nothing; an unlimited or zero limit has no thresholds. Whether a crossing notifies
    again is `threshold_key`'s business (one notification per key)."""
    if not alerts or limit is None or limit <= 0 or after <= before:
        return ()
    return tuple(p for p in alerts if before < mark(p, limit) <= after)


def threshold_key(metric: str, percent: int, limit: int, period_start: datetime) -> str:
    """One notification per (owner, metric, threshold, period) — and per limit value: a
    raised limit moves every mark, so thresholds the usage is below again are armed again,
    while usage that goes down and up under the same limit notifies once."""
    return f"threshold:{metric}:{period_start:%Y%m%dT%H%M%S}:{limit}:{percent}"


def threshold_kind(percent: int, hard: bool, seats: bool) -> NotificationKind:
    """100% of seats is "seats full"; 100% of a hard limit is "limit reached" (nothing more
    will be allowed); any other threshold is just a threshold."""
    if percent == 100 and seats:
        return NotificationKind.SEATS_FULL
    if percent == 100 and hard:
        return NotificationKind.LIMIT_REACHED
    return NotificationKind.USAGE_THRESHOLD


@attrs.frozen
class Notice:
    """What a rule decided the host should hear, before it is stored as a `Notification`
    (which adds the id, the time written and the delivery state)."""

    kind: NotificationKind
    """What happened."""
    key: str
    """What makes it one fact (see `Notification.key`)."""
    facts: Mapping[str, Any]
    """The details, JSON."""
    about: datetime
    """The instant it is about."""


@attrs.frozen
class Thresholds:
    """What a threshold is measured against: the limit in force and its terms."""

    metric: str
    """The limit name."""
    limit: int | None
    """The limit in force (``None``: unlimited, no thresholds)."""
    alerts: tuple[int, ...]
    """Its thresholds, in percent."""
    period_start: datetime
    """The billing period the notification counts once in."""
    hard: bool = False
    """Whether the limit refuses past it."""
    seats: bool = False
    """Whether it counts seats."""
    unit: str = ""
    """What is counted, for the message."""
    marks: tuple[int, ...] = attrs.field(init=False)
    """The usage at which each threshold is reached (`mark`), lowest first; none when
    there is no limit."""

    @marks.default
    def _marks(self) -> tuple[int, ...]:
        if self.limit is None or self.limit <= 0:
            return ()
        return tuple(mark(p, self.limit) for p in self.alerts)

    def crosses(self, before: int, after: int) -> bool:
        """Whether a change from ``before`` to ``after`` crosses a mark — exactly when
        `crossed` finds one, without building anything. Asked on every count of a limit
        with thresholds, before anything else is done: usage below the first mark or past
        the last is two comparisons, and usage between marks no unit of work."""
        marks = self.marks
        if not marks or after < marks[0] or before >= marks[-1]:
            return False
        following = bisect_right(marks, before)
        return following < len(marks) and marks[following] <= after


def threshold_notices(
    terms: Thresholds, before: int, after: int, at: datetime
) -> tuple[Notice, ...]:
    """The notices a usage change from ``before`` to ``after`` units gives: one for each
    threshold it crosses (`crossed`), keyed by `threshold_key`."""
    found = crossed(terms.alerts, terms.limit, before, after)
    if not found:
        return ()
    assert terms.limit is not None
    return tuple(
        Notice(
            threshold_kind(percent, terms.hard, terms.seats),
            threshold_key(terms.metric, percent, terms.limit, terms.period_start),
            {
                "metric": terms.metric,
                "threshold": percent,
                "limit": terms.limit,
                "used": after,
                "unit": terms.unit,
                "period_start": terms.period_start.isoformat(),
            },
            at,
        )
        for percent in found
    )
