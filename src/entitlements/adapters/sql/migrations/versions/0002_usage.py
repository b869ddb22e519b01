"""usage counters, usage records, reservations and seats"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import OWNER, owner, row_key
from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0002", "0001"


def upgrade() -> None:
    op.create_table(
        "ent_reservations",
        sa.Column("id", key_string(64), nullable=False),
        *owner(),
        sa.Column("metric", key_string(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("committed", sa.BigInteger(), nullable=False),
        sa.Column("key", key_string(128), nullable=True),
        sa.Column("settled_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ent_reservations")),
        sa.UniqueConstraint(*OWNER, "key", name="uq_ent_reservations_key"),
    )
    op.create_index(
        "ix_ent_reservations_due", "ent_reservations", ["tenant", "status", "expires_at"]
    )

    op.create_table(
        "ent_seat_assignments",
        *owner(),
        sa.Column("pool", key_string(64), nullable=False),
        sa.Column("member", key_string(128), nullable=False),
        sa.Column("assigned_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(*OWNER, "pool", "member", name=op.f("pk_ent_seat_assignments")),
    )
    op.create_table(
        "ent_usage_counters",
        *owner(),
        sa.Column("metric", key_string(64), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            *OWNER, "metric", "period_start", name=op.f("pk_ent_usage_counters")
        ),
    )
    op.create_table(
        "ent_usage_records",
        row_key(),
        sa.Column("id", key_string(64), nullable=False),
        *owner(),
        sa.Column("metric", key_string(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("key", key_string(128), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ent_usage_records")),
        sa.UniqueConstraint("id", name=op.f("uq_ent_usage_records_id")),
        sa.UniqueConstraint(*OWNER, "key", name="uq_ent_usage_records_key"),
    )
    op.create_index(
        "ix_ent_usage_records_period", "ent_usage_records", [*OWNER, "metric", "period_start"]
    )


def downgrade() -> None:
    op.drop_index("ix_ent_usage_records_period", table_name="ent_usage_records")

    op.drop_table("ent_usage_records")
    op.drop_table("ent_usage_counters")
    op.drop_table("ent_seat_assignments")
    op.drop_index("ix_ent_reservations_due", table_name="ent_reservations")

    op.drop_table("ent_reservations")
