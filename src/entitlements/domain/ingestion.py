"""Usage events taken in bulk: what a host hands `Usage.consume_many`, and what it gets
back for each event.

A batch is not a different rule: each event's outcome is the one consuming the events
one by one, in order, would have had. Refusals are results rather than exceptions, so
one owner over its limit does not cost the rest of the batch.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from entitlements.domain.owner import Owner
from entitlements.domain.usage import UsageDecision
from entitlements.errors import EntitlementsError

__all__ = ["UsageEvent", "UsageOutcome", "UsageResult"]


@attrs.frozen
class UsageEvent:
    """``amount`` units of ``metric`` used by ``owner``; ``key`` makes a re-sent event
    count once (as for `Usage.consume`); ``at`` is when it happened (default: now) and
    decides the period it counts in."""

    owner: Owner
    """Who used the units."""
    metric: str
    """The limit the units count against."""
    amount: int = 1
    """How many units (a positive whole number)."""
    key: str | None = None
    """An idempotency key: an event sent again with it counts once."""
    at: datetime | None = None
    """When the units were used (default: now); picks the usage period."""


class UsageOutcome(enum.StrEnum):
    """What became of one event of a batch."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


@attrs.frozen
class UsageResult:
    """One event's outcome. ``decision`` is what `Usage.consume` would have returned (or
    carried in its exception); ``error`` is the exception it would have raised —
    `LimitExceeded`, `UsageDenied`, `IdempotencyKeyReused` or `InvalidInput` — for a
    refused event, else ``None``."""

    event: UsageEvent
    """The event this result answers."""
    outcome: UsageOutcome
    """Accepted, duplicate or refused."""
    decision: UsageDecision
    """The usage decision, as a single ``consume`` would have made it."""
    error: EntitlementsError | None = None
    """Why it was refused (the error ``consume`` would have raised), else ``None``."""

    @property
    def accepted(self) -> bool:
        """Whether the event was counted now."""
        return self.outcome is UsageOutcome.ACCEPTED
