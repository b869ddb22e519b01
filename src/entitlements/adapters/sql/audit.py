"""The audit trail in SQL (append-only)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, owner_of, same_named, storage_errors
from entitlements.domain.audit import AuditEvent
from entitlements.domain.owner import Owner

__all__ = ["SqlAudit"]


def _audit_from(row: RowMapping) -> AuditEvent:
    owner = None if row["owner_kind"] is None else owner_of(row)
    return AuditEvent(
        owner=owner,
        **same_named(row, "id", "at", "actor", "action", "target", "before", "after", "reason"),
    )


class SqlAudit(Repository):
    """Appended rows wait in the unit of work and are inserted with its feed rows when it
    commits (in one statement where the engine can), or before anything reads the trail."""

    @storage_errors
    def append(self, event: AuditEvent) -> None:
        if event.owner is not None:
            self._scope(event.owner)
        self._uow.pending_audit.append(
            {
                "id": event.id,
                "tenant": self._t,
                "at": event.at,
                "actor": event.actor,
                "action": event.action,
                "target": event.target,
                "owner_kind": None if event.owner is None else event.owner.kind,
                "owner_id": None if event.owner is None else event.owner.id,
                "before": None if event.before is None else dict(event.before),
                "after": None if event.after is None else dict(event.after),
                "reason": event.reason,
            }
        )

    def flush(self) -> None:
        pending = self._uow.pending_audit
        if pending:
            self._conn.execute(t.audit_events.insert(), list(pending))
            pending.clear()

    @storage_errors
    def for_owner(self, owner: Owner) -> Sequence[AuditEvent]:
        self._scope(owner)
        self.flush()
        c = t.audit_events.c
        rows = self._rows(
            sa.select(t.audit_events)
            .where(c.tenant == self._t, c.owner_kind == owner.kind, c.owner_id == owner.id)
            .order_by(c.pk)
        )
        return [_audit_from(r) for r in rows]

    @storage_errors
    def for_target(self, target: str) -> Sequence[AuditEvent]:
        self.flush()
        c = t.audit_events.c
        rows = self._rows(
            sa.select(t.audit_events)
            .where(c.target == target, sa.or_(c.tenant == self._t, c.owner_kind.is_(None)))
            .order_by(c.pk)
        )
        return [_audit_from(r) for r in rows]

    @storage_errors
    def page_for_owner(
        self, owner: Owner, after: int | None, limit: int, *, newest_first: bool = False
    ) -> Sequence[tuple[int, AuditEvent]]:
        self._scope(owner)
        self.flush()
        c = t.audit_events.c
        past = [] if after is None else [c.pk < after if newest_first else c.pk > after]
        rows = self._rows(
            sa.select(t.audit_events)
            .where(c.tenant == self._t, c.owner_kind == owner.kind, c.owner_id == owner.id, *past)
            .order_by(c.pk.desc() if newest_first else c.pk)
            .limit(limit)
        )
        return [(r["pk"], _audit_from(r)) for r in rows]

    @storage_errors
    def page_for_target(
        self, target: str, after: int | None, limit: int
    ) -> Sequence[tuple[int, AuditEvent]]:
        self.flush()
        c = t.audit_events.c
        past = [] if after is None else [c.pk > after]
        # the tenant's rows and the catalog's (no tenant of their own) are two runs of
        # the (tenant, target, pk) index: each is read in order, up to the page
        tenants = sa.or_(c.tenant == self._t, c.owner_kind.is_(None))
        rows = self._rows(
            sa.select(t.audit_events)
            .where(c.target == target, tenants, *past)
            .order_by(c.pk)
            .limit(limit)
        )
        return [(r["pk"], _audit_from(r)) for r in rows]
