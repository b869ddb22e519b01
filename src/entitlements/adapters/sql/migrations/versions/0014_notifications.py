"""the notification outbox; alert thresholds on limit overrides

``ent_notifications`` holds what the host should hear about (a usage threshold crossed,
a trial ending...), written in the transaction that caused it, one row per fact
(``uq_ent_notifications_key``), with its delivery state: attempts, the next attempt,
the deliverer holding it and until when, delivered or parked as failed.

``alerts`` on ``ent_overrides`` and ``ent_override_history``: the thresholds a limit
override sets for its owner (NULL: the plan's stand).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import JSON, OWNER, owner, row_key
from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0014", "0013"


def upgrade() -> None:
    op.create_table(
        "ent_notifications",
        row_key(),
        sa.Column("id", key_string(64), nullable=False),
        *owner(),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("key", key_string(128), nullable=False),
        sa.Column("facts", JSON, nullable=False),
        sa.Column("about", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", UtcDateTime(), nullable=True),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.Column("failed_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_ent_notifications"),
        sa.UniqueConstraint("tenant", "id", name="uq_ent_notifications_id"),
        sa.UniqueConstraint(*OWNER, "key", name="uq_ent_notifications_key"),
    )
    op.create_index(
        "ix_ent_notifications_pending",
        "ent_notifications",
        ["tenant", "delivered_at", "failed_at", "pk"],
    )
    op.create_index("ix_ent_notifications_owner", "ent_notifications", [*OWNER, "pk"])
    for table in ("ent_overrides", "ent_override_history"):
        op.add_column(table, sa.Column("alerts", JSON, nullable=True))


def downgrade() -> None:
    for table in ("ent_override_history", "ent_overrides"):
        op.drop_column(table, "alerts")
    op.drop_index("ix_ent_notifications_owner", table_name="ent_notifications")
    op.drop_index("ix_ent_notifications_pending", table_name="ent_notifications")
    op.drop_table("ent_notifications")
