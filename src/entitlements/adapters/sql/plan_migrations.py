"""Plan-version migrations and their items, in SQL.

Workers claim pending items with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL, MariaDB): an
item another worker holds is passed over, never waited for, and once that worker commits
the item is no longer pending. SQLite has one writer at a time (``BEGIN IMMEDIATE``), so a
plain read under its write lock claims as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, owner_of, storage_errors
from entitlements.adapters.sql.subscriptions import subscription_from
from entitlements.domain.migration import (
    ItemStatus,
    Migration,
    MigrationItem,
    MigrationStatus,
    MoveAt,
    PriceLock,
    SkipReason,
)
from entitlements.domain.subscription import Subscription
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import MigrationNotFound

__all__ = ["SqlPlanMigrations"]

_m = t.migrations.c
_i = t.migration_items.c
_INSERT_CHUNK = 1000


_OUTCOME = ("status", "why", "error", "done_at", "moved_from")
_SETTLE = (
    t.migration_items.update()
    .where(
        *(
            column == sa.bindparam(f"p_{column.name}")
            for column in (_i.tenant, _i.migration_id, _i.seq)
        )
    )
    .values({name: sa.bindparam(f"p_{name}") for name in _OUTCOME})
)


def _settled(tenant: str, item: MigrationItem) -> dict[str, Any]:
    """`_SETTLE`'s parameters: the item and its final state."""
    return {
        "p_tenant": tenant,
        "p_migration_id": item.migration_id,
        "p_seq": item.seq,
        "p_status": item.status.value,
        "p_why": None if item.why is None else item.why.value,
        "p_error": item.error,
        "p_done_at": item.done_at,
        "p_moved_from": item.moved_from,
    }


def _migration_from(row: RowMapping) -> Migration:
    versions = row["from_versions"]
    return Migration(
        id=row["id"],
        tenant=row["tenant"] or None,
        plan_key=row["plan_key"],
        to_version=row["to_version"],
        from_versions=None if versions is None else tuple(int(v) for v in versions),
        move=MoveAt(row["move"]),
        move_at=row["move_at"],
        price_lock_until=row["price_lock_until"],
        if_over_quota=OverQuotaPolicy(row["if_over_quota"]),
        status=MigrationStatus(row["status"]),
        actor=row["actor"],
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _item_from(row: RowMapping) -> MigrationItem:
    return MigrationItem(
        migration_id=row["migration_id"],
        seq=row["seq"],
        subscription_id=row["subscription_id"],
        owner=owner_of(row),
        from_version=row["from_version"],
        status=ItemStatus(row["status"]),
        why=None if row["why"] is None else SkipReason(row["why"]),
        error=row["error"],
        done_at=row["done_at"],
        moved_from=row["moved_from"],
    )


class SqlPlanMigrations(Repository):
    def _item_row(self, item: MigrationItem) -> dict[str, Any]:
        self._scope(item.owner)
        return {
            "tenant": self._t,
            "migration_id": item.migration_id,
            "seq": item.seq,
            "subscription_id": item.subscription_id,
            "owner_kind": item.owner.kind,
            "owner_id": item.owner.id,
            "from_version": item.from_version,
            "status": item.status.value,
            "why": None if item.why is None else item.why.value,
            "error": item.error,
            "done_at": item.done_at,
            "moved_from": item.moved_from,
        }

    @storage_errors
    def add(self, migration: Migration, items: Sequence[MigrationItem]) -> None:
        self._conn.execute(
            t.migrations.insert().values(
                tenant=self._t,
                id=migration.id,
                plan_key=migration.plan_key,
                to_version=migration.to_version,
                from_versions=None
                if migration.from_versions is None
                else list(migration.from_versions),
                move=migration.move.value,
                move_at=migration.move_at,
                price_lock_until=migration.price_lock_until,
                if_over_quota=migration.if_over_quota.value,
                status=migration.status.value,
                actor=migration.actor,
                reason=migration.reason,
                created_at=migration.created_at,
                updated_at=migration.updated_at,
            )
        )
        rows = [self._item_row(item) for item in items]
        for start in range(0, len(rows), _INSERT_CHUNK):
            self._conn.execute(t.migration_items.insert(), rows[start : start + _INSERT_CHUNK])

    @storage_errors
    def get(self, migration_id: str) -> Migration:
        rows = self._rows(
            sa.select(t.migrations).where(_m.tenant == self._t, _m.id == migration_id)
        )
        if not rows:
            raise MigrationNotFound(migration_id)
        return _migration_from(rows[0])

    @storage_errors
    def list(self, limit: int = 100) -> Sequence[Migration]:
        rows = self._rows(
            sa.select(t.migrations)
            .where(_m.tenant == self._t)
            .order_by(_m.created_at.desc(), _m.id.desc())
            .limit(limit)
        )
        return [_migration_from(row) for row in rows]

    @storage_errors
    def set_status(
        self,
        migration_id: str,
        expected: Iterable[MigrationStatus],
        status: MigrationStatus,
        at: datetime,
    ) -> bool:
        result = self._conn.execute(
            t.migrations.update()
            .where(
                _m.tenant == self._t,
                _m.id == migration_id,
                _m.status.in_([s.value for s in expected]),
            )
            .values(status=status.value, updated_at=at)
        )
        return bool(result.rowcount)

    @storage_errors
    def subscribers(self, plan_key: str, versions: Iterable[int]) -> Sequence[Subscription]:
        c = t.subscriptions.c
        rows = self._rows(
            sa.select(t.subscriptions)
            .where(
                c.tenant == self._t,
                c.plan_key == plan_key,
                c.plan_version.in_(list(versions)),
                c.live_owner.is_not(None),
            )
            .order_by(c.pk)
        )
        return [subscription_from(row) for row in rows]

    @storage_errors
    def items(
        self,
        migration_id: str,
        *,
        after: int = 0,
        limit: int = 1000,
        status: str | None = None,
    ) -> Sequence[MigrationItem]:
        where = [_i.tenant == self._t, _i.migration_id == migration_id, _i.seq > after]
        if status is not None:
            where.append(_i.status == status)
        rows = self._rows(sa.select(t.migration_items).where(*where).order_by(_i.seq).limit(limit))
        return [_item_from(row) for row in rows]

    @storage_errors
    def claim(self, migration_id: str, limit: int) -> Sequence[MigrationItem]:
        rows = self._rows(
            sa.select(t.migration_items)
            .where(
                _i.tenant == self._t,
                _i.migration_id == migration_id,
                _i.status == ItemStatus.PENDING.value,
            )
            .order_by(_i.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_item_from(row) for row in rows]

    @storage_errors
    def settle(self, item: MigrationItem) -> None:
        self._scope(item.owner)
        self._conn.execute(_SETTLE, _settled(self._t, item))

    @storage_errors
    def settle_many(self, items: Sequence[MigrationItem]) -> None:
        for item in items:
            self._scope(item.owner)
        if items:  # one executemany: a single round trip where the driver batches
            self._conn.execute(_SETTLE, [_settled(self._t, item) for item in items])

    @storage_errors
    def counts(self, migration_id: str) -> Mapping[str, int]:
        rows = self._conn.execute(
            sa.select(_i.status, sa.func.count())
            .where(_i.tenant == self._t, _i.migration_id == migration_id)
            .group_by(_i.status)
        ).all()
        return {str(status): int(count) for status, count in rows}

    @storage_errors
    def cancel_pending(self, migration_id: str, at: datetime) -> int:
        result = self._conn.execute(
            t.migration_items.update()
            .where(
                _i.tenant == self._t,
                _i.migration_id == migration_id,
                _i.status == ItemStatus.PENDING.value,
            )
            .values(status=ItemStatus.CANCELED.value, done_at=at)
        )
        return int(result.rowcount)

    @storage_errors
    def price_locks(self, subscription_id: str) -> Sequence[PriceLock]:
        rows = self._conn.execute(
            sa.select(
                _i.subscription_id,
                _i.from_version,
                _i.moved_from,
                _i.done_at,
                _m.plan_key,
                _m.to_version,
                _m.price_lock_until,
                _m.id,
            )
            .select_from(
                t.migration_items.join(
                    t.migrations, sa.and_(_m.tenant == _i.tenant, _m.id == _i.migration_id)
                )
            )
            .where(
                _i.tenant == self._t,
                _i.subscription_id == subscription_id,
                _i.status.in_([ItemStatus.MOVED.value, ItemStatus.SCHEDULED.value]),
                _m.price_lock_until.is_not(None),
            )
        ).mappings()
        return [
            PriceLock(
                row["subscription_id"],
                row["plan_key"],
                row["moved_from"] if row["moved_from"] is not None else row["from_version"],
                row["to_version"],
                row["done_at"],
                row["price_lock_until"],
                row["id"],
            )
            for row in rows
        ]
