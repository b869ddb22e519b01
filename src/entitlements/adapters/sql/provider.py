"""Applied provider events and links to provider subscriptions, in SQL."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, owner_of, storage_errors
from entitlements.domain.billing import ProviderLink

__all__ = ["SqlProvider"]


def _link_from(row: RowMapping) -> ProviderLink:
    return ProviderLink(
        row["external_id"],
        owner_of(row),
        row["last_applied_at"],
        row["checkout_id"],
        row["plan_key"],
        row["manager"],
        row["subscription_id"],
    )


class SqlProvider(Repository):
    @storage_errors
    def seen(self, event_id: str) -> bool:
        e = t.provider_events.c
        return bool(
            self._rows(sa.select(e.event_id).where(e.tenant == self._t, e.event_id == event_id))
        )

    @storage_errors
    def mark_seen(self, event_id: str, at: datetime) -> None:
        try:
            with self._conn.begin_nested():
                self._conn.execute(
                    t.provider_events.insert().values(tenant=self._t, event_id=event_id, seen_at=at)
                )
        except exc.IntegrityError:
            pass  # a concurrent delivery of the same event got there first

    @storage_errors
    def link(self, external_id: str) -> ProviderLink | None:
        c = t.provider_links.c
        rows = self._rows(
            sa.select(t.provider_links).where(c.tenant == self._t, c.external_id == external_id)
        )
        return _link_from(rows[0]) if rows else None

    @storage_errors
    def link_for_checkout(self, checkout_id: str) -> ProviderLink | None:
        c = t.provider_links.c
        rows = self._rows(
            sa.select(t.provider_links)
            .where(c.tenant == self._t, c.checkout_id == checkout_id)
            .order_by(c.external_id)
        )
        return _link_from(rows[0]) if rows else None

    @storage_errors
    def put_link(self, link: ProviderLink) -> None:
        self._scope(link.owner)
        c = t.provider_links.c
        values = {
            "owner_kind": link.owner.kind,
            "owner_id": link.owner.id,
            "last_applied_at": link.last_applied_at,
            "checkout_id": link.checkout_id,
            "plan_key": link.plan_key,
            "manager": link.manager,
            "subscription_id": link.subscription_id,
        }
        updated = self._conn.execute(
            t.provider_links.update()
            .where(c.tenant == self._t, c.external_id == link.external_id)
            .values(**values)
        )
        if updated.rowcount == 0:
            self._conn.execute(
                t.provider_links.insert().values(
                    tenant=self._t, external_id=link.external_id, **values
                )
            )
