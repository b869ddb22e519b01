"""Usage counters, the usage ledger, reservations and seat assignments in SQL.

Counting is race-free without table locks: ``add`` is one conditional UPDATE
(``used + reserved + n <= ceiling``), evaluated by the database against the latest row
under its row lock, so concurrent writers can never pass a hard limit together. Missing
counter rows are created on first use; a concurrent creator is tolerated.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, owner_of, storage_errors
from entitlements.domain.owner import Owner
from entitlements.domain.usage import (
    Counter,
    Reservation,
    ReservationStatus,
    SeatAssignment,
    UsageRecord,
)
from entitlements.errors import Conflict, NotFound

__all__ = ["SqlSeats", "SqlUsage"]


def _record_from(row: RowMapping) -> UsageRecord:
    return UsageRecord(
        id=row["id"],
        owner=owner_of(row),
        metric=row["metric"],
        amount=row["amount"],
        period_start=row["period_start"],
        at=row["at"],
        key=row["key"],
    )


def _reservation_from(row: RowMapping) -> Reservation:
    return Reservation(
        id=row["id"],
        owner=owner_of(row),
        metric=row["metric"],
        amount=row["amount"],
        period_start=row["period_start"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        status=ReservationStatus(row["status"]),
        committed=row["committed"],
        key=row["key"],
        settled_at=row["settled_at"],
    )


class SqlUsage(Repository):
    def _owner(self, table: sa.Table, owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
        return self._owned(table, owner)

    def _counter_where(self, owner: Owner, metric: str, period_start: datetime) -> tuple[Any, ...]:
        c = t.usage_counters.c
        return (
            *self._owner(t.usage_counters, owner),
            c.metric == metric,
            c.period_start == period_start,
        )

    @storage_errors
    def counter(self, owner: Owner, metric: str, period_start: datetime) -> Counter:
        rows = self._rows(
            sa.select(t.usage_counters).where(*self._counter_where(owner, metric, period_start))
        )
        if not rows:
            return Counter(owner, metric, period_start)
        return Counter(owner, metric, period_start, rows[0]["used"], rows[0]["reserved"])

    @storage_errors
    def counters(self, owner: Owner, metric: str) -> Sequence[Counter]:
        rows = self._rows(
            sa.select(t.usage_counters).where(
                *self._owner(t.usage_counters, owner), t.usage_counters.c.metric == metric
            )
        )
        found = [Counter(owner, metric, r["period_start"], r["used"], r["reserved"]) for r in rows]
        return sorted(found, key=lambda c: c.period_start)

    def _ensure_row(self, owner: Owner, metric: str, period_start: datetime) -> None:
        """Create the counter row if missing, with an upsert: concurrent creators then
        take the row's exclusive lock in turn instead of sharing a lock they would all
        need to upgrade (a deadlock on MariaDB)."""
        values = {
            "tenant": self._t,
            "owner_kind": owner.kind,
            "owner_id": owner.id,
            "metric": metric,
            "period_start": period_start,
            "used": 0,
            "reserved": 0,
        }
        dialect = self._conn.dialect.name
        if dialect == "postgresql":
            self._conn.execute(
                postgresql.insert(t.usage_counters).values(**values).on_conflict_do_nothing()
            )
        elif dialect == "sqlite":
            self._conn.execute(
                sqlite.insert(t.usage_counters).values(**values).on_conflict_do_nothing()
            )
        elif dialect in ("mysql", "mariadb"):
            statement = mysql.insert(t.usage_counters).values(**values)
            self._conn.execute(statement.on_duplicate_key_update(used=t.usage_counters.c.used))
        else:
            if self._rows(
                sa.select(t.usage_counters.c.used).where(
                    *self._counter_where(owner, metric, period_start)
                )
            ):
                return
            try:
                with self._conn.begin_nested():
                    self._conn.execute(t.usage_counters.insert().values(**values))
            except exc.IntegrityError:
                pass  # created concurrently

    @storage_errors
    def add(
        self,
        owner: Owner,
        metric: str,
        period_start: datetime,
        *,
        used: int = 0,
        reserved: int = 0,
        ceiling: int | None = None,
    ) -> Counter | None:
        self._ensure_row(owner, metric, period_start)
        c = t.usage_counters.c
        conditions = [
            *self._counter_where(owner, metric, period_start),
            c.used + used >= 0,
            c.reserved + reserved >= 0,
        ]
        if ceiling is not None and used + reserved > 0:
            conditions.append(c.used + c.reserved + (used + reserved) <= ceiling)
        result = self._conn.execute(
            t.usage_counters.update()
            .where(*conditions)
            .values(used=c.used + used, reserved=c.reserved + reserved)
        )
        if result.rowcount != 1:
            return None
        return self.counter(owner, metric, period_start)

    @storage_errors
    def set_used(self, owner: Owner, metric: str, period_start: datetime, used: int) -> Counter:
        self._ensure_row(owner, metric, period_start)
        self._conn.execute(
            t.usage_counters.update()
            .where(*self._counter_where(owner, metric, period_start))
            .values(used=used)
        )
        return self.counter(owner, metric, period_start)

    def _record_by_key(self, owner: Owner, key: str) -> UsageRecord | None:
        rows = self._rows(
            sa.select(t.usage_records).where(
                *self._owner(t.usage_records, owner), t.usage_records.c.key == key
            )
        )
        return _record_from(rows[0]) if rows else None

    @storage_errors
    def add_record(self, record: UsageRecord) -> UsageRecord | None:
        owner = record.owner
        insert = t.usage_records.insert().values(
            id=record.id,
            tenant=self._t,
            owner_kind=owner.kind,
            owner_id=owner.id,
            metric=record.metric,
            amount=record.amount,
            period_start=record.period_start,
            at=record.at,
            key=record.key,
        )
        if record.key is None:
            self._conn.execute(insert)
            return None
        existing = self._record_by_key(owner, record.key)
        if existing is not None:
            return existing
        try:
            with self._conn.begin_nested():
                self._conn.execute(insert)
        except exc.IntegrityError:
            # the same key, written by a concurrent request that committed first
            existing = self._record_by_key(owner, record.key)
            if existing is not None:
                return existing
            raise Conflict(
                f"usage with key {record.key!r} of {owner} is being recorded concurrently; retry to get its result"
            ) from None
        return None

    @storage_errors
    def records(self, owner: Owner, metric: str, period_start: datetime) -> Sequence[UsageRecord]:
        r = t.usage_records.c
        rows = self._rows(
            sa.select(t.usage_records)
            .where(
                *self._owner(t.usage_records, owner),
                r.metric == metric,
                r.period_start == period_start,
            )
            .order_by(r.pk)
        )
        return [_record_from(row) for row in rows]

    @storage_errors
    def add_reservation(self, reservation: Reservation) -> Reservation | None:
        owner = reservation.owner
        self._scope(owner)
        if reservation.key is not None:
            rows = self._rows(
                sa.select(t.reservations).where(
                    *self._owner(t.reservations, owner), t.reservations.c.key == reservation.key
                )
            )
            if rows:
                return _reservation_from(rows[0])
        self._conn.execute(t.reservations.insert().values(**self._reservation_row(reservation)))
        return None

    def _reservation_row(self, r: Reservation) -> dict[str, Any]:
        return {
            "id": r.id,
            "tenant": self._t,
            "owner_kind": r.owner.kind,
            "owner_id": r.owner.id,
            "metric": r.metric,
            "amount": r.amount,
            "period_start": r.period_start,
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "status": r.status.value,
            "committed": r.committed,
            "key": r.key,
            "settled_at": r.settled_at,
        }

    @storage_errors
    def reservation(self, owner: Owner, reservation_id: str) -> Reservation:
        rows = self._rows(
            sa.select(t.reservations).where(
                *self._owner(t.reservations, owner), t.reservations.c.id == reservation_id
            )
        )
        if not rows:
            raise NotFound(f"reservation {reservation_id} of {owner} does not exist")
        return _reservation_from(rows[0])

    @storage_errors
    def update_reservation(self, reservation: Reservation) -> None:
        row = self._reservation_row(reservation)
        result = self._conn.execute(
            t.reservations.update()
            .where(
                *self._owner(t.reservations, reservation.owner),
                t.reservations.c.id == reservation.id,
            )
            .values(status=row["status"], committed=row["committed"], settled_at=row["settled_at"])
        )
        if result.rowcount != 1:
            raise NotFound(f"reservation {reservation.id} of {reservation.owner} does not exist")

    @storage_errors
    def held_reservations_due(self, now: datetime, limit: int = 500) -> Sequence[Reservation]:
        r = t.reservations.c
        rows = self._rows(
            sa.select(t.reservations)
            .where(
                r.tenant == self._t, r.status == ReservationStatus.HELD.value, r.expires_at <= now
            )
            .order_by(r.expires_at, r.id)
            .limit(limit)
        )
        return sorted((_reservation_from(row) for row in rows), key=lambda x: (x.expires_at, x.id))


class SqlSeats(Repository):
    def _where(self, owner: Owner, pool: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (*self._owned(t.seat_assignments, owner), t.seat_assignments.c.pool == pool)

    @storage_errors
    def assigned(self, owner: Owner, pool: str) -> Sequence[SeatAssignment]:
        rows = self._rows(sa.select(t.seat_assignments).where(*self._where(owner, pool)))
        found = [SeatAssignment(owner, r["member"], r["assigned_at"], pool) for r in rows]
        return sorted(found, key=lambda a: a.member)

    @storage_errors
    def add(self, assignment: SeatAssignment) -> None:
        owner = assignment.owner
        self._scope(owner)
        try:
            with self._conn.begin_nested():
                self._conn.execute(
                    t.seat_assignments.insert().values(
                        tenant=self._t,
                        owner_kind=owner.kind,
                        owner_id=owner.id,
                        pool=assignment.pool,
                        member=assignment.member,
                        assigned_at=assignment.assigned_at,
                    )
                )
        except exc.IntegrityError:
            raise Conflict(
                f"{assignment.member} already holds a {assignment.pool} seat of {owner}"
            ) from None

    @storage_errors
    def remove(self, owner: Owner, pool: str, member: str) -> SeatAssignment:
        rows = self._rows(
            sa.select(t.seat_assignments).where(
                *self._where(owner, pool), t.seat_assignments.c.member == member
            )
        )
        if not rows:
            raise NotFound(f"{member} holds no {pool} seat of {owner}")
        self._conn.execute(
            t.seat_assignments.delete().where(
                *self._where(owner, pool), t.seat_assignments.c.member == member
            )
        )
        return SeatAssignment(owner, member, rows[0]["assigned_at"], pool)
