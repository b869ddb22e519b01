"""The effective-dated history of subscriptions and overrides in SQL.

Each write of a subscription or an override leaves one stretch: the state it stored and
the instant it took effect (the unit of work's ``effective_at``). Stretches wait in the
unit of work and are inserted with its audit and feed rows when it commits — on
PostgreSQL in the same statement — or before anything reads the history. Reading at an
instant picks, per subscription or override, the stretch written last at or before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from entitlements.adapters.sql import tables as t

if TYPE_CHECKING:
    from entitlements.adapters.sql.store import SqlUnitOfWork

__all__ = [
    "OVERRIDES_AT",
    "SUBSCRIPTION_AT",
    "flush_history",
    "log_override",
    "log_subscription",
]

_SUBSCRIPTION_COLUMNS = frozenset(c.name for c in t.subscription_history.c) - {"seq"}
_OVERRIDE_COLUMNS = frozenset(c.name for c in t.override_history.c) - {"seq"}


def _stretch(uow: SqlUnitOfWork, table: sa.Table, row: Mapping[str, Any], **more: Any) -> None:
    columns = _SUBSCRIPTION_COLUMNS if table is t.subscription_history else _OVERRIDE_COLUMNS
    stretch = {k: v for k, v in row.items() if k in columns}
    stretch.update(more, effective_at=uow.written_at())
    uow.pending_history.setdefault(table, []).append(stretch)


def log_subscription(uow: SqlUnitOfWork, row: Mapping[str, Any]) -> None:
    """Append the subscription ``row`` (as `subscription_row` builds it) to its history."""
    _stretch(uow, t.subscription_history, row)


def log_override(uow: SqlUnitOfWork, row: Mapping[str, Any], *, present: bool) -> None:
    """Append an override row to its history: set (``present``) or removed."""
    _stretch(uow, t.override_history, row, present=present)


def flush_history(uow: SqlUnitOfWork) -> None:
    """Insert the stretches still waiting (a read of the history, or a savepoint, comes)."""
    for table, rows in uow.pending_history.items():
        if rows:
            uow.connection.execute(table.insert(), list(rows))
            rows.clear()


def _owned(table: sa.Table) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        table.c.tenant == sa.bindparam("tenant"),
        table.c.owner_kind == sa.bindparam("kind"),
        table.c.owner_id == sa.bindparam("id"),
        table.c.effective_at <= sa.bindparam("when", type_=table.c.effective_at.type),
    )


_s = t.subscription_history
_NEWEST = (
    sa.select(_s.c.id)
    .where(*_owned(_s))
    .order_by(_s.c.created_at.desc(), _s.c.seq.desc())
    .limit(1)
    .scalar_subquery()
)
SUBSCRIPTION_AT = (
    sa.select(_s)
    .where(*_owned(_s), _s.c.id == _NEWEST)
    .order_by(_s.c.effective_at.desc(), _s.c.seq.desc())
    .limit(1)
)
"""The owner's subscription created last by ``when``, as its last stretch by then left
it (one statement, on the owner's index). `subscriptions._at` applies the same choice to
keys read for many owners at once: change both together (the store contract's
``states_many`` cases hold them equal)."""

_o = t.override_history
_later = _o.alias("later")
_SUPERSEDED = sa.exists().where(
    _later.c.tenant == _o.c.tenant,
    _later.c.owner_kind == _o.c.owner_kind,
    _later.c.owner_id == _o.c.owner_id,
    _later.c.kind == _o.c.kind,
    _later.c.key == _o.c.key,
    _later.c.effective_at <= sa.bindparam("when", type_=_o.c.effective_at.type),
    sa.or_(
        _later.c.effective_at > _o.c.effective_at,
        sa.and_(_later.c.effective_at == _o.c.effective_at, _later.c.seq > _o.c.seq),
    ),
)
OVERRIDES_AT = sa.select(_o).where(*_owned(_o), _o.c.present.is_(True), ~_SUPERSEDED)
"""Each of the owner's overrides whose last stretch by ``when`` sets it."""


def params(uow: SqlUnitOfWork, kind: str, owner_id: str, when: datetime) -> dict[str, Any]:
    return {"tenant": uow.tenant or "", "kind": kind, "id": owner_id, "when": when}
