"""Changes that time alone causes: a trial ends, a scheduled cancellation or an expiry
date is reached, a billing period rolls over.

`advance` applies them in the order they fell due, each at the instant it fell due (a
cancellation at period end is dated at the period end, not when the sweep noticed), so
running it twice, or late, gives the same result as running it on time.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from entitlements.domain.instant import utc
from entitlements.domain.subscription import (
    RULES,
    Event,
    Subscription,
    SubscriptionStatus,
    transition,
)

__all__ = ["DueChange", "advance", "next_due"]

MAX_STEPS = 10_000


@attrs.frozen
class DueChange:
    event: Event
    at: datetime
    before: Subscription
    after: Subscription


def next_due(subscription: Subscription, now: datetime) -> tuple[Event, datetime] | None:
    """The earliest time-driven event due at or before ``now``, if any."""
    if subscription.is_terminal:
        return None
    candidates: list[tuple[datetime, int, Event]] = []
    if subscription.expires_at is not None:
        candidates.append((subscription.expires_at, 0, Event.EXPIRE))
    cancel_at = subscription.cancel_effective_at
    if cancel_at is not None:
        candidates.append((cancel_at, 1, Event.CANCEL))
    if (
        subscription.status is SubscriptionStatus.TRIALING
        and subscription.trial_ends_at is not None
    ):
        candidates.append((subscription.trial_ends_at, 2, Event.END_TRIAL))
    if (
        subscription.current_period is not None
        and subscription.cycle is not None
        and subscription.status in RULES[Event.RENEW_PERIOD].sources
    ):
        candidates.append((subscription.current_period.end, 3, Event.RENEW_PERIOD))
    due = [c for c in candidates if c[0] <= now]
    if not due:
        return None
    at, _, event = min(due)
    return event, at


def advance(subscription: Subscription, now: datetime) -> tuple[Subscription, list[DueChange]]:
    """Apply every change due at or before ``now``; returns the new state and the steps."""
    now = utc(now, "now")
    steps: list[DueChange] = []
    current = subscription
    for _ in range(MAX_STEPS):
        due = next_due(current, now)
        if due is None:
            break
        event, at = due
        changes = {}
        if event is Event.RENEW_PERIOD:
            assert current.cycle is not None
            assert current.current_period is not None
            anchor = current.cycle_anchor or current.current_period.start
            changes["current_period"] = current.cycle.next_period(anchor, current.current_period)
        after = attrs.evolve(transition(current, event, at, **changes), updated_at=now)
        steps.append(DueChange(event, at, current, after))
        current = after
    return current, steps
