"""The notification outbox in SQL.

Deliverers in many processes claim rows with ``SELECT ... FOR UPDATE SKIP LOCKED`` on
PostgreSQL and MariaDB (a concurrent claim passes over the rows another is taking rather
than wait for them); SQLite has one writer at a time, and a write transaction starts
with ``BEGIN IMMEDIATE``, so its claims take turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, owner_of, storage_errors
from entitlements.domain.frozen import FrozenDict
from entitlements.domain.notification import Notification, NotificationKind
from entitlements.domain.owner import Owner
from entitlements.errors import NotFound

__all__ = ["SqlNotifications"]

_n = t.notifications.c
_PENDING = (_n.delivered_at.is_(None), _n.failed_at.is_(None))


_DELIVERY = (
    "attempts",
    "next_attempt_at",
    "claimed_by",
    "claimed_until",
    "delivered_at",
    "failed_at",
    "last_error",
)
"""The columns a delivery attempt changes."""

_STATE = ("id", "key", "about", "created_at", *_DELIVERY)
"""The columns stored as the notification holds them."""


_KINDS = {kind.value: kind for kind in NotificationKind}
"""Kinds by stored value: a dictionary look-up is a fraction of the enum's own."""


def _claimed_from(row: RowMapping, worker: str, until: datetime) -> Notification:
    """A claimed row as a notification, built without the checks a new one gets: a claim
    reads a batch at a time, and what the table holds was checked when it was written
    (its datetimes come back aware, in UTC)."""
    made = object.__new__(Notification)
    for name in _STATE:
        object.__setattr__(made, name, row[name])
    object.__setattr__(made, "owner", owner_of(row))
    object.__setattr__(made, "kind", _KINDS.get(row["kind"]) or NotificationKind(row["kind"]))
    object.__setattr__(made, "facts", FrozenDict(row["facts"]))
    object.__setattr__(made, "claimed_by", worker)
    object.__setattr__(made, "claimed_until", until)
    return made


def _from(row: RowMapping | dict[str, Any]) -> Notification:
    return Notification(
        owner=owner_of(row),
        kind=row["kind"],
        facts=row["facts"],
        **{name: row[name] for name in _STATE},
    )


def _state(n: Notification, names: tuple[str, ...] = _DELIVERY) -> dict[str, Any]:
    """The columns ``names`` (by default those a delivery attempt changes)."""
    return {name: getattr(n, name) for name in names}


@cache
def _insert_statement(dialect: str) -> Any:
    """An insert that does nothing when the owner's notification of the same fact is
    stored: one statement, no savepoint; a concurrent insert of the same key waits for
    the first to commit or roll back, then writes nothing or writes."""
    if dialect == "postgresql":
        return postgresql.insert(t.notifications).on_conflict_do_nothing().returning(_n.pk)
    if dialect == "sqlite":
        return sqlite.insert(t.notifications).on_conflict_do_nothing().returning(_n.pk)
    return mysql.insert(t.notifications).prefix_with("IGNORE")


@cache
def _insert_many(dialect: str) -> Any:
    """`_insert_statement` without the answer, for many rows in one statement."""
    if dialect == "postgresql":
        return postgresql.insert(t.notifications).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(t.notifications).on_conflict_do_nothing()
    return mysql.insert(t.notifications).prefix_with("IGNORE")


class SqlNotifications(Repository):
    """Rows `append` buffers in the unit of work are inserted before any other method
    here reads or changes the table (`SqlUnitOfWork.flush`)."""

    @storage_errors
    def add(self, notification: Notification) -> bool:
        self._uow.flush(t.notifications)
        dialect = self._conn.dialect.name
        result = self._conn.execute(_insert_statement(dialect), self._row(notification))
        if dialect in ("postgresql", "sqlite"):
            return result.first() is not None
        return bool(result.rowcount)

    @storage_errors
    def append(self, notification: Notification) -> None:
        row = self._row(notification)
        self._uow.buffer(t.notifications, row, _insert_many(self._conn.dialect.name))

    def _row(self, notification: Notification) -> dict[str, Any]:
        return {
            **self._owner_row(notification.owner),
            "kind": notification.kind.value,
            "facts": dict(notification.facts),
            **_state(notification, _STATE),
        }

    @storage_errors
    def get(self, notification_id: str) -> Notification:
        self._uow.flush(t.notifications)
        row = self._found(
            t.notifications,
            notification_id,
            lambda: NotFound(f"no notification {notification_id!r}"),
        )
        return _from(row)

    @storage_errors
    def claim(
        self, worker: str, now: datetime, until: datetime, limit: int = 100
    ) -> Sequence[Notification]:
        self._uow.flush(t.notifications)
        due = (
            sa.select(t.notifications)
            .where(
                _n.tenant == self._t,
                *_PENDING,
                sa.or_(_n.next_attempt_at.is_(None), _n.next_attempt_at <= now),
                sa.or_(_n.claimed_until.is_(None), _n.claimed_until <= now),
            )
            .order_by(_n.pk)
            .limit(limit)
        )
        if self._conn.dialect.name != "sqlite":
            due = due.with_for_update(skip_locked=True)
        rows = self._rows(due)
        if not rows:
            return []
        first_waiting = self._first_waiting(rows)
        kept = [
            r
            for r in rows
            if r["pk"] < first_waiting.get((r["owner_kind"], r["owner_id"]), r["pk"] + 1)
        ]
        if kept:
            # by primary key alone: the rows are this tenant's, read and locked above, and
            # a planner without fresh statistics walks a tenant's whole index otherwise
            self._conn.execute(
                sa.update(t.notifications)
                .where(_n.pk.in_([r["pk"] for r in kept]))
                .values(claimed_by=worker, claimed_until=until)
            )
        return [_claimed_from(r, worker, until) for r in kept]

    def _first_waiting(self, rows: Sequence[RowMapping]) -> dict[tuple[str, str], int]:
        """Per owner, its oldest pending notification older than the last claimed row that
        this claim did not take (in another's claim, locked by a concurrent claim, or
        waiting out a backoff): the owner's rows from it on must wait. Read through the
        pending index (a grouped query would walk the owner index, every row of the
        tenant, each batch); the few rows it finds are grouped here."""
        taken = [r["pk"] for r in rows]
        query = sa.select(_n.pk, _n.owner_kind, _n.owner_id).where(
            _n.tenant == self._t, *_PENDING, _n.pk < max(taken), _n.pk.not_in(taken)
        )
        first: dict[tuple[str, str], int] = {}
        for pk, kind, id_ in self._conn.execute(query):
            if pk < first.get((kind, id_), pk + 1):
                first[(kind, id_)] = pk
        return first

    @storage_errors
    def delivered(self, ids: Sequence[str], worker: str, now: datetime) -> int:
        self._uow.flush(t.notifications)
        if not ids:
            return 0
        result = self._conn.execute(
            sa.update(t.notifications)
            .where(
                _n.tenant == self._t,
                _n.id.in_(list(ids)),
                _n.claimed_by == worker,
                _n.delivered_at.is_(None),
            )
            .values(delivered_at=now, claimed_by=None, claimed_until=None)
        )
        return int(result.rowcount)

    @storage_errors
    def release(self, ids: Sequence[str], worker: str) -> None:
        self._uow.flush(t.notifications)
        if ids:
            self._conn.execute(
                sa.update(t.notifications)
                .where(_n.tenant == self._t, _n.id.in_(list(ids)), _n.claimed_by == worker)
                .values(claimed_by=None, claimed_until=None)
            )

    @storage_errors
    def update(self, notification: Notification, worker: str | None) -> bool:
        self._uow.flush(t.notifications)
        where = [_n.tenant == self._t, _n.id == notification.id]
        if worker is not None:
            where.append(_n.claimed_by == worker)
        result = self._conn.execute(
            sa.update(t.notifications).where(*where).values(**_state(notification))
        )
        return bool(result.rowcount)

    @storage_errors
    def listed(
        self, owner: Owner | None = None, failed: bool = False, limit: int = 50
    ) -> Sequence[Notification]:
        self._uow.flush(t.notifications)
        where = [_n.tenant == self._t]
        if owner is not None:
            where = list(self._owned(t.notifications, owner))
        if failed:
            where.append(_n.failed_at.is_not(None))
        query = sa.select(t.notifications).where(*where).order_by(_n.pk.desc()).limit(limit)
        return [_from(r) for r in self._rows(query)]

    @storage_errors
    def purge(self, before: datetime, limit: int = 10_000) -> int:
        self._uow.flush(t.notifications)
        old = [
            r["pk"]
            for r in self._batch(t.notifications, [_n.delivered_at < before], [_n.pk], limit)
        ]
        if not old:
            return 0
        self._conn.execute(sa.delete(t.notifications).where(_n.tenant == self._t, _n.pk.in_(old)))
        return len(old)
