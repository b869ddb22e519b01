"""Per-owner overrides in SQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.history import OVERRIDES_AT, flush_history, log_override
from entitlements.adapters.sql.history import params as history_params
from entitlements.adapters.sql.repository import (
    Repository,
    owner_of,
    owners_among,
    same_named,
    storage_errors,
)
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner
from entitlements.errors import OverrideNotFound

if TYPE_CHECKING:
    from entitlements.adapters.sql.store import SqlUnitOfWork

__all__ = ["SqlOverrides", "override_row"]


def _override_from(row: RowMapping | Mapping[str, Any]) -> Override:
    return Override(
        owner=owner_of(row),
        enabled=bool(row["enabled"]),
        actions=None if row["actions"] is None else frozenset(row["actions"]),
        alerts=row["alerts"],
        **same_named(row, "kind", "key", "reason", "actor", "created_at", "expires_at", "value"),
    )


def override_row(tenant: str, override: Override) -> dict[str, Any]:
    """The stored row of ``override`` in ``tenant`` ('' for none)."""
    return {
        "tenant": tenant,
        "owner_kind": override.owner.kind,
        "owner_id": override.owner.id,
        "kind": override.kind.value,
        "key": override.key,
        "reason": override.reason,
        "actor": override.actor,
        "created_at": override.created_at,
        "expires_at": override.expires_at,
        "enabled": override.enabled,
        "actions": None if override.actions is None else sorted(override.actions),
        "value": override.value,
        "alerts": None if override.alerts is None else list(override.alerts),
    }


def _sorted(overrides: Iterable[Override]) -> Sequence[Override]:
    return sorted(overrides, key=lambda o: (o.kind, o.key))


_KEYS = ("tenant", "owner_kind", "owner_id", "kind", "key")
_OWNER_OVERRIDES = sa.select(t.overrides).where(
    t.overrides.c.tenant == sa.bindparam("tenant"),
    t.overrides.c.owner_kind == sa.bindparam("kind"),
    t.overrides.c.owner_id == sa.bindparam("id"),
)


class SqlOverrides(Repository):
    def __init__(self, uow: SqlUnitOfWork) -> None:
        super().__init__(uow)
        self._preloaded: dict[Owner, Sequence[Override]] = {}

    def _owner_filter(self, owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
        return self._owned(t.overrides, owner)

    def preload(self, owner: Owner, rows: Sequence[Mapping[str, Any]]) -> None:
        """Overrides read along with something else, under the owner's terms lock (held
        until this unit of work ends): `for_owner` answers from them until this unit of
        work writes the owner's overrides."""
        self._preloaded[owner] = _sorted(_override_from(r) for r in rows)

    @storage_errors
    def preload_many(self, owners: Sequence[Owner]) -> None:
        """`preload` the overrides of ``owners`` (each under its terms lock) in one read."""
        rows = [
            row
            for owned in owners_among(t.overrides, self._t, owners)
            for row in self._rows(sa.select(t.overrides).where(owned))
        ]
        mine: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            mine.setdefault((row["owner_kind"], row["owner_id"]), []).append(row)
        for owner in owners:
            self.preload(owner, mine.get((owner.kind, owner.id), []))

    def forget(self, owner: Owner) -> None:
        self._preloaded.pop(owner, None)

    def forget_all(self) -> None:
        self._preloaded.clear()

    @storage_errors
    def for_owner(self, owner: Owner) -> Sequence[Override]:
        self._scope(owner)
        known = self._preloaded.get(owner)
        if known is not None:
            return known
        params = {"tenant": self._t, "kind": owner.kind, "id": owner.id}
        rows = self._conn.execute(_OWNER_OVERRIDES, params).mappings().all()
        return _sorted(_override_from(r) for r in rows)

    def _find(self, owner: Owner, kind: OverrideKind, key: str) -> Override | None:
        c = t.overrides.c
        rows = self._rows(
            sa.select(t.overrides).where(
                *self._owner_filter(owner), c.kind == kind.value, c.key == key
            )
        )
        return _override_from(rows[0]) if rows else None

    @storage_errors
    def put(self, override: Override) -> Override | None:
        owner = override.owner
        self.forget(owner)
        self._uow.revisions.bump(owner)
        replaced = self._find(owner, override.kind, override.key)
        row = override_row(self._t, override)
        values = {k: v for k, v in row.items() if k not in _KEYS}
        # an upsert: a concurrent first setter of the same key cannot make this one fail
        dialect = self._conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            insert = (postgresql if dialect == "postgresql" else sqlite).insert(t.overrides)
            statement: sa.Executable = insert.values(**row).on_conflict_do_update(
                index_elements=list(_KEYS), set_=values
            )
        else:
            statement = mysql.insert(t.overrides).values(**row).on_duplicate_key_update(**values)
        self._conn.execute(statement)
        log_override(self._uow, row, present=True)
        return replaced

    @storage_errors
    def remove(self, owner: Owner, kind: OverrideKind, key: str) -> Override:
        found = self._find(owner, kind, key)
        if found is None:
            raise OverrideNotFound(owner, f"{kind.value} {key}")
        self.forget(owner)
        self._uow.revisions.bump(owner)
        c = t.overrides.c
        self._conn.execute(
            t.overrides.delete().where(
                *self._owner_filter(owner), c.kind == kind.value, c.key == key
            )
        )
        self._log_removal(found)
        return found

    def _log_removal(self, removed: Override) -> None:
        log_override(self._uow, override_row(self._t, removed), present=False)

    @storage_errors
    def at(self, owner: Owner, when: datetime) -> Sequence[Override]:
        self._scope(owner)
        flush_history(self._uow)
        found = self._conn.execute(
            OVERRIDES_AT, history_params(self._uow, owner.kind, owner.id, when)
        )
        return _sorted(_override_from(r) for r in found.mappings())

    @storage_errors
    def remove_expired(
        self, owner: Owner, kind: OverrideKind, key: str, now: datetime
    ) -> Override | None:
        found = self._find(owner, kind, key)
        if found is None or found.is_active(now):
            return None
        c = t.overrides.c
        self.forget(owner)
        self._uow.revisions.bump(owner)
        result = self._conn.execute(
            t.overrides.delete().where(
                *self._owner_filter(owner),
                c.kind == kind.value,
                c.key == key,
                c.expires_at <= now,
            )
        )
        if result.rowcount != 1:
            return None
        self._log_removal(found)
        return found

    @storage_errors
    def expired(self, now: datetime, limit: int = 500) -> Sequence[Override]:
        c = t.overrides.c
        rows = self._batch(
            t.overrides,
            [c.expires_at <= now],
            [c.expires_at, c.owner_kind, c.owner_id, c.kind, c.key],
            limit,
        )
        found = [_override_from(r) for r in rows]
        return sorted(found, key=lambda o: (o.expires_at, o.owner.kind, o.owner.id, o.kind, o.key))
