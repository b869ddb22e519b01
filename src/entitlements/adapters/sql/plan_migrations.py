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
from entitlements.adapters.sql.repository import Repository, owner_of, same_named, storage_errors
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
_SETTLE_ALIKE = (
    t.migration_items.update()
    .where(
        _i.tenant == sa.bindparam("p_tenant"),
        _i.migration_id == sa.bindparam("p_migration_id"),
        _i.seq.in_(sa.bindparam("p_seqs", expanding=True)),
        _i.seq.between(sa.bindparam("p_first"), sa.bindparam("p_last")),
    )
    .values({name: sa.bindparam(f"p_{name}") for name in _OUTCOME})
)
"""`_SETTLE` for the items given by their numbers, all ending alike (between the first
and the last of them: a range the primary key finds however the planner weighs the list)."""


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


_MIGRATION_SAME = (
    "id",
    "plan_key",
    "to_version",
    "move_at",
    "price_lock_until",
    "actor",
    "reason",
    "created_at",
    "updated_at",
)
"""The migration's fields stored unchanged in the column of the same name."""
_ITEM_SAME = ("migration_id", "seq", "subscription_id", "from_version", "error", "done_at")
"""The item's fields stored unchanged in the column of the same name."""


def _migration_row(tenant: str, migration: Migration) -> dict[str, Any]:
    versions = migration.from_versions
    return {
        "tenant": tenant,
        **{name: getattr(migration, name) for name in _MIGRATION_SAME},
        "from_versions": None if versions is None else list(versions),
        "move": migration.move.value,
        "if_over_quota": migration.if_over_quota.value,
        "status": migration.status.value,
    }


def _migration_from(row: RowMapping) -> Migration:
    versions = row["from_versions"]
    return Migration(
        tenant=row["tenant"] or None,
        from_versions=None if versions is None else tuple(int(v) for v in versions),
        move=MoveAt(row["move"]),
        if_over_quota=OverQuotaPolicy(row["if_over_quota"]),
        status=MigrationStatus(row["status"]),
        **same_named(row, *_MIGRATION_SAME),
    )


def _item_from(row: RowMapping) -> MigrationItem:
    return MigrationItem(
        owner=owner_of(row),
        status=ItemStatus(row["status"]),
        why=None if row["why"] is None else SkipReason(row["why"]),
        moved_from=row["moved_from"],
        **same_named(row, *_ITEM_SAME),
    )


class SqlPlanMigrations(Repository):
    def _item_row(self, item: MigrationItem) -> dict[str, Any]:
        return {
            **self._owner_row(item.owner),
            **{name: getattr(item, name) for name in _ITEM_SAME},
            "status": item.status.value,
            "why": None if item.why is None else item.why.value,
            "moved_from": item.moved_from,
        }

    @storage_errors
    def add(self, migration: Migration, items: Sequence[MigrationItem]) -> None:
        self._conn.execute(t.migrations.insert(), _migration_row(self._t, migration))
        rows = [self._item_row(item) for item in items]
        for start in range(0, len(rows), _INSERT_CHUNK):
            self._conn.execute(t.migration_items.insert(), rows[start : start + _INSERT_CHUNK])

    @storage_errors
    def get(self, migration_id: str) -> Migration:
        row = self._found(t.migrations, migration_id, lambda: MigrationNotFound(migration_id))
        return _migration_from(row)

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
        alike: dict[tuple[Any, ...], list[int]] = {}
        for item in items:
            self._scope(item.owner)
            settled = _settled(self._t, item)
            key = (item.migration_id, *(settled[f"p_{name}"] for name in _OUTCOME))
            alike.setdefault(key, []).append(item.seq)
        for (migration_id, *ending), seqs in alike.items():
            # one statement per outcome: a group's items mostly end alike
            params = {f"p_{name}": value for name, value in zip(_OUTCOME, ending, strict=True)}
            params.update(
                p_tenant=self._t,
                p_migration_id=migration_id,
                p_seqs=seqs,
                p_first=min(seqs),
                p_last=max(seqs),
            )
            self._conn.execute(_SETTLE_ALIKE, params)

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
