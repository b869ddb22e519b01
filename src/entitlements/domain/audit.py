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
    at: datetime = attrs.field(converter=as_utc, validator=aware)
    actor: str
    action: str
    target: str
    owner: Owner | None = None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    reason: str | None = None
