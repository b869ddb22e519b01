"""The audit trail: every mutation records who did what to which record, before and
after, why, and when. Append-only: nothing in the library updates or deletes it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from entitlements.domain.instant import as_utc, aware
from entitlements.domain.owner import Owner

__all__ = ["AuditEvent"]


@attrs.frozen
class AuditEvent:
    """``before``/``after`` are JSON documents of the record (``None`` when it did not
    exist before, or no longer exists after)."""

    id: str
    """Unique per event, so hosts can deduplicate what listeners forwarded."""
    at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When the change was recorded; a change time caused says in ``reason`` when it fell
    due (``due at ...``), and its ``after`` document is dated then."""
    actor: str
    """Who made the change (``staff:ann``, ``system:sweep``, ``provider:...``)."""
    action: str
    """What was done, as ``group.verb`` (``subscription.convert``, ``override.set``...)."""
    target: str
    """The record changed (``subscription:<id>``, ``plan:<key>``, ``contract:<id>``)."""
    owner: Owner | None = None
    """The owner whose access it may change (``None`` for plan-wide changes);
    `AuditTrail.for_owner` selects on it."""
    before: Mapping[str, Any] | None = None
    """The record before the change (``None``: it did not exist)."""
    after: Mapping[str, Any] | None = None
    """The record after the change (``None``: it was removed)."""
    reason: str | None = None
    """Why, in the actor's words (a ticket, a note), when one was given."""
