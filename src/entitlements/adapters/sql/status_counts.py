"""How many owners' most recent subscriptions are stored in each status, kept as changes.

Every subscription write that moves an owner's most recent subscription from one status
to another appends rows ``(tenant, status, ±1)`` to ``ent_status_counts`` in its own
transaction; nothing there is ever updated, so writes of one tenant do not queue on a
shared row. A read sums a tenant's rows per status (one index range), then corrects the
rows time has moved since they were stored (see ``SqlSubscriptions.status_counts``).

Writes of one owner are serialized by its terms revision row (`bump`), which each
subscription write takes before these rows are appended: the status a write reads as
"before" is the one the previous write of that owner committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from entitlements.adapters.sql import tables as t
from entitlements.errors import StorageError

__all__ = ["ADDED", "CHANGED", "MOVED", "STORED", "counted", "fold"]

_s = t.subscriptions.c
_newer = t.subscriptions.alias("newer")
_LATEST = ~sa.exists().where(
    _newer.c.tenant == _s.tenant,
    _newer.c.owner_kind == _s.owner_kind,
    _newer.c.owner_id == _s.owner_id,
    _newer.c.pk > _s.pk,
)
"""The row is its owner's most recent subscription."""

_COLUMNS = ("tenant", "status", "delta")
_status = t.status_counts.c.status.type


def _change(status: str, delta: int) -> sa.Select[Any]:
    """``(tenant, status, delta)`` of the subscription row ``:id``, if it is its owner's
    most recent."""
    return sa.select(
        _s.tenant, sa.cast(sa.bindparam(status, type_=_status), _status), sa.literal(delta)
    ).where(_s.id == sa.bindparam("id"), _LATEST)


CHANGED = t.status_counts.insert().from_select(
    _COLUMNS, sa.union_all(_change("old", -1), _change("new", 1))
)
"""A write moved the row ``:id`` from status ``:old`` to ``:new``: counted when the row
is its owner's most recent."""

_prior = t.subscriptions.alias("prior")
ADDED = t.status_counts.insert().from_select(
    _COLUMNS,
    sa.union_all(
        sa.select(_s.tenant, _s.status, sa.literal(1)).where(_s.id == sa.bindparam("id")),
        sa.select(_prior.c.tenant, _prior.c.status, sa.literal(-1)).where(
            _prior.c.pk
            == sa.select(sa.func.max(_s.pk))
            .where(
                _s.tenant == sa.bindparam("tenant"),
                _s.owner_kind == sa.bindparam("kind"),
                _s.owner_id == sa.bindparam("owner"),
                _s.pk < sa.bindparam("pk"),
            )
            .scalar_subquery()
        ),
    ),
)
"""The row ``:id`` (pk ``:pk``) was added: it counts, and the owner's row before it no
longer does."""

_c = t.status_counts.c
STORED = (
    sa.select(_c.status, sa.func.sum(_c.delta))
    .where(_c.tenant == sa.bindparam("tenant"))
    .group_by(_c.status)
)
"""A tenant's owners by the stored status of their most recent subscription."""

MOVED = sa.select(t.subscriptions).where(
    _s.tenant == sa.bindparam("tenant"),
    _s.next_change_at <= sa.bindparam("now", type_=_s.next_change_at.type),
    _LATEST,
)
"""A tenant's most recent subscriptions that time has moved since they were stored (as
many as the sweep has not caught up with: the sweep's index range)."""


def counted(rows: Any) -> Mapping[str, int]:
    return {status: int(total) for status, total in rows if total}


def fold(connection: sa.Connection, tenant: str, limit: int) -> int:
    """Replace up to ``limit`` of the tenant's rows by one per status holding their sum;
    how many were replaced (0 when that would not make fewer). The rows are locked as
    read, so a concurrent fold skips them (PostgreSQL, MariaDB) or waits (SQLite writes
    one at a time), and a write appending meanwhile adds rows this fold does not touch."""
    rows = connection.execute(
        sa.select(_c.pk, _c.status, _c.delta)
        .where(_c.tenant == tenant)
        .limit(limit)
        .with_for_update()
    ).all()
    sums: dict[str, int] = {}
    for _, status, delta in rows:
        sums[status] = sums.get(status, 0) + delta
    if len(rows) <= len(sums):
        return 0
    deleted = connection.execute(t.status_counts.delete().where(_c.pk.in_([r[0] for r in rows])))
    if deleted.rowcount != len(rows):
        raise StorageError("status counts changed while they were folded")
    kept = [{"tenant": tenant, "status": s, "delta": n} for s, n in sums.items() if n]
    if kept:
        connection.execute(t.status_counts.insert(), kept)
    return len(rows)
