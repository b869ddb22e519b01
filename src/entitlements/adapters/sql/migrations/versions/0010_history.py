"""history: effective-dated stretches of subscriptions and overrides, backfilled

Answers for a past instant read these tables. The backfill recovers what the audit trail
recorded: every audited write of a subscription (its ``after`` document) and every
audited set or removal of an override, each in force from the instant of its audit
event. Then each stored subscription and override whose present state the trail does not
end with gets a stretch of its own: from its last write (``updated_at``, or when the
override was set), or — for a subscription the trail knows nothing of — from its
creation. What cannot be recovered: states between writes the trail did not record (an
audit event without a full document, rows written by hand), and overrides removed
without an audit event.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations import columns
from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0010", "0009"

_BATCH = 1000


def _subscription_columns() -> list[sa.Column[Any]]:
    return [
        *columns.owner(),
        sa.Column("id", key_string(64), nullable=False),
        sa.Column("plan_key", key_string(64), nullable=False),
        *columns.subscription_state(),
        sa.Column("plan_manager", sa.String(255), nullable=True),
        sa.Column("contract", columns.JSON, nullable=True),
    ]


def _override_columns() -> list[sa.Column[Any]]:
    return [
        *columns.owner(),
        sa.Column("kind", key_string(8), nullable=False),
        sa.Column("key", key_string(64), nullable=False),
        *columns.override_terms(),
    ]


def _stretch_table(name: str, repeated: list[sa.Column[Any]], *more: sa.Column[Any]) -> sa.Table:
    return op.create_table(
        name,
        columns.row_key("seq"),
        sa.Column("effective_at", UtcDateTime(), nullable=False),
        *repeated,
        *more,
        sa.PrimaryKeyConstraint("seq", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    subscriptions = _stretch_table("ent_subscription_history", _subscription_columns())
    op.create_index(
        "ix_ent_subscription_history_owner",
        "ent_subscription_history",
        [*columns.OWNER, "effective_at"],
    )
    overrides = _stretch_table(
        "ent_override_history",
        _override_columns(),
        sa.Column("present", sa.Boolean(), nullable=False),
    )
    op.create_index(
        "ix_ent_override_history_owner",
        "ent_override_history",
        [*columns.OWNER, "kind", "key", "effective_at"],
    )
    bind = op.get_bind()
    _insert(bind, subscriptions, _subscription_stretches(bind))
    _insert(bind, overrides, _override_stretches(bind))


def downgrade() -> None:
    op.drop_index("ix_ent_override_history_owner", table_name="ent_override_history")
    op.drop_table("ent_override_history")
    op.drop_index("ix_ent_subscription_history_owner", table_name="ent_subscription_history")
    op.drop_table("ent_subscription_history")


# -- backfill -----------------------------------------------------------------------------

_audit = sa.table(
    "ent_audit_events",
    sa.column("pk", sa.BigInteger()),
    sa.column("at", UtcDateTime()),
    sa.column("target", sa.String(400)),
    sa.column("before", columns.JSON),
    sa.column("after", columns.JSON),
)


def _insert(bind: sa.Connection, table: sa.Table, rows: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == _BATCH:
            bind.execute(table.insert(), batch)
            batch = []
    if batch:
        bind.execute(table.insert(), batch)


def _audited(bind: sa.Connection, prefix: str) -> list[tuple[datetime, str, Any, Any]]:
    c = _audit.c
    rows = bind.execute(
        sa.select(c.at, c.target, c.before, c.after)
        .where(c.target.like(f"{prefix}%"))
        .order_by(c.pk)
    )
    return [(at, target, before, after) for at, target, before, after in rows]


def _subscription_from_document(document: Any, target: str) -> dict[str, Any] | None:
    """The stored row of an audited subscription document, or ``None`` when the document
    is not a whole subscription (some events record only what changed)."""
    from entitlements.adapters.sql.subscriptions import subscription_row
    from entitlements.domain.subscription import Subscription
    from entitlements.serialization import converter

    if not isinstance(document, Mapping) or target != f"subscription:{document.get('id')}":
        return None
    try:
        row = subscription_row(converter.structure(document, Subscription))
    except Exception:
        return None
    return {k: v for k, v in row.items() if k not in ("live_owner", "next_change_at")}


def _subscription_stretches(bind: sa.Connection) -> Iterator[dict[str, Any]]:
    last: dict[str, tuple[datetime, int]] = {}
    for at, target, _, after in _audited(bind, "subscription:"):
        row = _subscription_from_document(after, target)
        if row is not None:
            last[row["id"]] = (at, row["revision"])
            yield {**row, "effective_at": at}
    names = [c.name for c in _subscription_columns()]
    stored = sa.table(
        "ent_subscriptions", *(sa.column(c.name, c.type) for c in _subscription_columns())
    )
    for found in bind.execute(sa.select(stored)).mappings():
        row = {name: found[name] for name in names}
        known = last.get(row["id"])
        if known is None:
            yield {**row, "effective_at": row["created_at"]}
        elif known[1] != row["revision"]:
            yield {**row, "effective_at": max(row["updated_at"], known[0])}


def _override_row(document: Any) -> dict[str, Any] | None:
    from entitlements.adapters.sql.overrides import override_row
    from entitlements.domain.override import Override
    from entitlements.serialization import converter

    if not isinstance(document, Mapping):
        return None
    try:
        override = converter.structure(document, Override)
    except Exception:
        return None
    return override_row(override.owner.tenant or "", override)


_SLOT = (*columns.OWNER, "kind", "key")


def _slot(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in _SLOT)


def _audited_overrides(bind: sa.Connection) -> Iterator[tuple[datetime, dict[str, Any], bool]]:
    """(instant, override row, set or removed) of each audited override write."""
    for at, _, before, after in _audited(bind, "override:"):
        row = _override_row(after)
        if row is not None:
            yield at, row, True
            continue
        removed = _override_row(before)
        if removed is not None:
            yield at, removed, False


def _override_stretches(bind: sa.Connection) -> Iterator[dict[str, Any]]:
    last: dict[tuple[Any, ...], tuple[datetime, dict[str, Any] | None]] = {}
    for at, row, present in _audited_overrides(bind):
        last[_slot(row)] = (at, row if present else None)
        yield {**row, "present": present, "effective_at": at}
    stored = sa.table("ent_overrides", *(sa.column(c.name, c.type) for c in _override_columns()))
    for found in bind.execute(sa.select(stored)).mappings():
        row = dict(found)
        known = last.get(_slot(row))
        if known is None:
            yield {**row, "present": True, "effective_at": row["created_at"]}
        elif known[1] != row:
            yield {**row, "present": True, "effective_at": max(row["created_at"], known[0])}
