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
from entitlements.domain.instant import as_optional_utc, as_utc, aware, optional_aware
from entitlements.domain.owner import Owner

__all__ = ["MAX_ATTEMPTS", "CommandKind", "CommandStatus", "ProviderCommand", "retry_delay"]

MAX_ATTEMPTS = 10
"""After this many failed sends a command is ``failed``: staff look at it (it stays
visible on `Billing.state`), `Billing.retry` sends it again."""


class CommandKind(enum.StrEnum):
    START_CHECKOUT = "start_checkout"
    CHANGE_PLAN = "change_plan"
    CANCEL = "cancel"


class CommandStatus(enum.StrEnum):
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
    id: str
    owner: Owner
    kind: CommandKind = attrs.field(converter=_kind)
    payload: Mapping[str, Any]
    idempotency_key: str
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    subscription_id: str | None = None
    status: CommandStatus = attrs.field(default=CommandStatus.PENDING, converter=_status)
    attempts: int = 0
    next_attempt_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_aware
    )
    sent_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_aware
    )
    last_error: str | None = None
    result: Mapping[str, Any] | None = None

    @property
    def is_open(self) -> bool:
        """Not yet done at the provider (pending or failed)."""
        return self.status is not CommandStatus.SENT

    def delivered(self, at: datetime, result: Mapping[str, Any]) -> ProviderCommand:
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
        return attrs.evolve(self, status=CommandStatus.PENDING, next_attempt_at=at)
