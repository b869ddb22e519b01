"""Mutations remembered by their idempotency key, in SQL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, owner_of, storage_errors
from entitlements.domain.owner import Owner
from entitlements.domain.requests import KeyedRequest
from entitlements.errors import Conflict

__all__ = ["SqlRequests"]

_q = t.requests.c
_FORGET = t.requests.delete().where(
    _q.tenant == sa.bindparam("p_tenant"),
    _q.owner_kind == sa.bindparam("owner_kind"),
    _q.owner_id == sa.bindparam("owner_id"),
    _q.key == sa.bindparam("key"),
)


@cache
def _claim_statement(dialect: str) -> Any:
    """An insert that does nothing on a stored key. On every engine it waits for a
    concurrent insert of the same key to commit or roll back before deciding, which is
    what makes a claim exclusive."""
    if dialect == "postgresql":
        return postgresql.insert(t.requests).on_conflict_do_nothing().returning(_q.key)
    if dialect == "sqlite":
        return sqlite.insert(t.requests).on_conflict_do_nothing().returning(_q.key)
    return mysql.insert(t.requests).prefix_with("IGNORE")


class SqlRequests(Repository):
    def _where(self, owner: Owner, key: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (*self._owned(t.requests, owner), _q.key == key)

    @storage_errors
    def claim(self, request: KeyedRequest) -> KeyedRequest | None:
        self._scope(request.owner)
        row = {
            "tenant": self._t,
            "owner_kind": request.owner.kind,
            "owner_id": request.owner.id,
            "key": request.key,
            "operation": request.operation,
            "digest": request.digest,
            "at": request.at,
            "outcome": dict(request.outcome),
        }
        dialect = self._conn.dialect.name
        # the stored request is read with a shared lock: that reads the latest committed
        # row whatever the isolation level (a host's engine may run MariaDB at REPEATABLE
        # READ) and keeps a sweep from forgetting it under us
        stored = sa.select(t.requests).where(*self._where(request.owner, request.key))
        for _ in range(2):
            result = self._conn.execute(_claim_statement(dialect).values(**row))
            if dialect in ("postgresql", "sqlite"):
                if result.first() is not None:
                    return None
            elif result.rowcount == 1:
                return None
            found = self._rows(stored.with_for_update(read=True))
            if found:
                return KeyedRequest(
                    owner_of(found[0]),
                    found[0]["key"],
                    found[0]["operation"],
                    found[0]["digest"],
                    found[0]["at"],
                    found[0]["outcome"],
                )
            # forgotten between the insert and the read: claim it again
        raise Conflict(
            f"idempotency key {request.key!r} was claimed and forgotten concurrently; retry"
        )

    @storage_errors
    def settle(self, owner: Owner, key: str, outcome: Mapping[str, Any]) -> None:
        self._conn.execute(
            t.requests.update().where(*self._where(owner, key)).values(outcome=dict(outcome))
        )

    @storage_errors
    def forget(self, before: datetime, limit: int = 10_000) -> int:
        # picked first: MariaDB cannot DELETE from a table it selects from
        old = self._rows(
            sa.select(_q.owner_kind, _q.owner_id, _q.key)
            .where(_q.tenant == self._t, _q.at < before)
            .order_by(_q.at)
            .limit(limit)
        )
        if not old:
            return 0
        if self._conn.dialect.name in ("mysql", "mariadb"):  # seeks the key for a row list
            picked = [(row["owner_kind"], row["owner_id"], row["key"]) for row in old]
            keys = sa.tuple_(_q.owner_kind, _q.owner_id, _q.key).in_(picked)
            self._conn.execute(t.requests.delete().where(_q.tenant == self._t, keys))
        else:  # SQLite scans the tenant for a row list, PostgreSQL overflows its stack
            self._conn.execute(_FORGET, [{"p_tenant": self._t, **row} for row in old])
        return len(old)
