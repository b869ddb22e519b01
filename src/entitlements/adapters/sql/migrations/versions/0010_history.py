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

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from entitlements.adapters.sql.types import UtcDateTime, key_string

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BATCH = 1000


def _owner_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("owner_kind", key_string(64), nullable=False),
        sa.Column("owner_id", key_string(255), nullable=False),
    ]


def _subscription_columns() -> list[sa.Column[Any]]:
    return [
        *_owner_columns(),
        sa.Column("id", key_string(64), nullable=False),
        sa.Column("plan_key", key_string(64), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=True),
        sa.Column("trial_ends_at", UtcDateTime(), nullable=True),
        sa.Column("period_start", UtcDateTime(), nullable=True),
        sa.Column("period_end", UtcDateTime(), nullable=True),
        sa.Column("cycle_unit", sa.String(8), nullable=True),
        sa.Column("cycle_every", sa.Integer(), nullable=True),
        sa.Column("cycle_anchor", UtcDateTime(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("canceled_at", UtcDateTime(), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("past_due_since", UtcDateTime(), nullable=True),
        sa.Column("suspended_from", sa.String(16), nullable=True),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("addons", JSON, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("plan_manager", sa.String(255), nullable=True),
        sa.Column("contract", JSON, nullable=True),
    ]


def _override_columns() -> list[sa.Column[Any]]:
    return [
        *_owner_columns(),
        sa.Column("kind", key_string(8), nullable=False),
        sa.Column("key", key_string(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("actions", JSON, nullable=True),
        sa.Column("value", sa.BigInteger(), nullable=True),
    ]


def _stretch_table(name: str, columns: list[sa.Column[Any]], *more: sa.Column[Any]) -> sa.Table:
    return op.create_table(
        name,
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("effective_at", UtcDateTime(), nullable=False),
        *columns,
        *more,
        sa.PrimaryKeyConstraint("seq", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    subscriptions = _stretch_table("ent_subscription_history", _subscription_columns())
    op.create_index(
        "ix_ent_subscription_history_owner",
        "ent_subscription_history",
        ["tenant", "owner_kind", "owner_id", "effective_at"],
        unique=False,
    )
    overrides = _stretch_table(
        "ent_override_history",
        _override_columns(),
        sa.Column("present", sa.Boolean(), nullable=False),
    )
    op.create_index(
        "ix_ent_override_history_owner",
        "ent_override_history",
        ["tenant", "owner_kind", "owner_id", "kind", "key", "effective_at"],
        unique=False,
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
    sa.column("before", JSON),
    sa.column("after", JSON),
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


_SLOT = ("tenant", "owner_kind", "owner_id", "kind", "key")


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
