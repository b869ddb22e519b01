"""Reading the audit trail (writing happens inside every use case)."""

from __future__ import annotations

from entitlements.domain.audit import AuditEvent
from entitlements.domain.checks import check_id, check_optional_id
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.page import DEFAULT_LIMIT, Page, check_limit, decode_cursor, page_of
from entitlements.service.runtime import Runtime

__all__ = ["AuditTrail"]


class AuditTrail:
    """``ents.audit``: who changed what, when and why, read back from the audit log."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def for_owner(
        self,
        owner: Owner,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page[AuditEvent]:
        """What was done to this owner, a page at a time, oldest first (or newest first):
        pass the page's ``next`` as ``cursor`` for the page after it."""
        owner = as_owner(owner)
        limit = check_limit(limit)
        kind = "audit-owner-newest" if newest_first else "audit-owner"
        after = decode_cursor(cursor, kind, int)
        with self._rt.read(owner.tenant) as uow:
            found = uow.audit.page_for_owner(
                owner,
                None if after is None else after[0],
                limit + 1,
                newest_first=bool(newest_first),
            )
        return page_of([((i,), e) for i, e in found], limit, kind)

    def for_target(
        self,
        target: str,
        tenant: str | None = None,
        *,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[AuditEvent]:
        """What was done to one record, e.g. ``"plan:pro"`` or ``"subscription:<id>"``,
        a page at a time, oldest first."""
        check_id(target, "target", max_length=1000)
        check_optional_id(tenant, "tenant")
        limit = check_limit(limit)
        after = decode_cursor(cursor, "audit-target", int)
        with self._rt.read(tenant) as uow:
            found = uow.audit.page_for_target(
                target, None if after is None else after[0], limit + 1
            )
        return page_of([((i,), e) for i, e in found], limit, "audit-target")
