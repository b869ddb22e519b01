"""Reading the audit trail (writing happens inside every use case)."""

from __future__ import annotations

from collections.abc import Sequence

from entitlements.domain.audit import AuditEvent
from entitlements.domain.checks import check_id, check_optional_id
from entitlements.domain.owner import Owner, as_owner
from entitlements.service.runtime import Runtime

__all__ = ["AuditTrail"]


class AuditTrail:
    """``ents.audit``: who changed what, when and why, read back from the audit log."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def for_owner(self, owner: Owner) -> Sequence[AuditEvent]:
        """Everything done to this owner, oldest first."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return uow.audit.for_owner(owner)

    def for_target(self, target: str, tenant: str | None = None) -> Sequence[AuditEvent]:
        """Everything done to one record, e.g. ``"plan:pro"`` or ``"subscription:<id>"``."""
        check_id(target, "target", max_length=1000)
        check_optional_id(tenant, "tenant")
        with self._rt.read(tenant) as uow:
            return uow.audit.for_target(target)
