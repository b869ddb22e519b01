"""Commands to the payment provider, as recorded in our transaction (the outbox).

A use case that needs the provider to act decides everything locally first, then
records a `ProviderCommand` in the same unit of work as its own writes: the command
exists if and only if our side committed. It is sent after commit and, when the provider
is unreachable, again by the sweep, always under the same idempotency key, so a retry
never makes the provider act twice. What the provider then did comes back through its
events (`Billing.apply_provider_event`), which stay the source of truth.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from entitlements.domain.checks import parse_enum
from entitlements.domain.instant import (
    as_utc,
    aware,
    optional_instant,
)
from entitlements.domain.owner import Owner

__all__ = ["MAX_ATTEMPTS", "CommandKind", "CommandStatus", "ProviderCommand", "retry_delay"]

MAX_ATTEMPTS = 10
"""After this many failed sends a command is ``failed``: staff look at it (it stays
visible on `Billing.state`), `Billing.retry` sends it again."""


class CommandKind(enum.StrEnum):
    """What a command asks the payment provider to do."""

    START_CHECKOUT = "start_checkout"
    CHANGE_PLAN = "change_plan"
    CANCEL = "cancel"
    SEND_INVOICE = "send_invoice"


class CommandStatus(enum.StrEnum):
    """Where a command stands: pending, delivered or failed."""

    PENDING = "pending"
    """Recorded, not yet acknowledged by the provider."""
    SENT = "sent"
    FAILED = "failed"
    """Gave up after `MAX_ATTEMPTS` sends; nothing retries it by itself."""


def _kind(value: object) -> CommandKind:
    return parse_enum(CommandKind, value, "command.kind")


def _status(value: object) -> CommandStatus:
    return parse_enum(CommandStatus, value, "command.status")


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff from 30 seconds, capped at an hour."""
    return min(timedelta(seconds=30 * 2 ** max(attempts - 1, 0)), timedelta(hours=1))


@attrs.frozen
class ProviderCommand:
    """A command to the payment provider, recorded in our transaction and sent after it committed (the outbox), so our side and the provider's never diverge silently."""

    id: str
    """The command's id."""
    owner: Owner
    """The owner it concerns."""
    kind: CommandKind = attrs.field(converter=_kind)
    """What it asks the provider to do."""
    payload: Mapping[str, Any]
    """The arguments sent to the provider."""
    idempotency_key: str
    """Sent with every attempt, so a retry never acts twice at the provider."""
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was recorded."""
    subscription_id: str | None = None
    """The subscription it concerns, if any."""
    status: CommandStatus = attrs.field(default=CommandStatus.PENDING, converter=_status)
    """Pending, delivered or failed."""
    attempts: int = 0
    """How many times it was sent."""
    next_attempt_at: datetime | None = optional_instant()
    """When the sweep tries again (pending commands)."""
    sent_at: datetime | None = optional_instant()
    """When the provider acknowledged it."""
    last_error: str | None = None
    """What the last failed attempt said."""
    result: Mapping[str, Any] | None = None
    """What the provider answered."""

    @property
    def is_open(self) -> bool:
        """Not yet done at the provider (pending or failed)."""
        return self.status is not CommandStatus.SENT

    def delivered(self, at: datetime, result: Mapping[str, Any]) -> ProviderCommand:
        """The command as the provider acknowledged it."""
        return attrs.evolve(
            self,
            status=CommandStatus.SENT,
            attempts=self.attempts + 1,
            sent_at=at,
            next_attempt_at=None,
            last_error=None,
            result=dict(result),
        )

    def attempt_failed(self, at: datetime, error: str) -> ProviderCommand:
        """The command after a failed attempt: retried later, or failed after the last."""
        attempts = self.attempts + 1
        give_up = attempts >= MAX_ATTEMPTS
        return attrs.evolve(
            self,
            status=CommandStatus.FAILED if give_up else CommandStatus.PENDING,
            attempts=attempts,
            next_attempt_at=None if give_up else at + retry_delay(attempts),
            last_error=error[:2000],
        )

    def retried(self, at: datetime) -> ProviderCommand:
        """The command staff sent again: pending once more."""
        return attrs.evolve(self, status=CommandStatus.PENDING, next_attempt_at=at)
