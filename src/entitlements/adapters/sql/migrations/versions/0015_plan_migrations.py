"""plan-version migrations: the job and its items"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import JSON
from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0015", "0014"


def upgrade() -> None:
    op.create_table(
        "ent_migrations",
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("id", key_string(64), nullable=False),
        sa.Column("plan_key", key_string(64), nullable=False),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("from_versions", JSON, nullable=True),
        sa.Column("move", sa.String(16), nullable=False),
        sa.Column("move_at", UtcDateTime(), nullable=True),
        sa.Column("price_lock_until", UtcDateTime(), nullable=True),
        sa.Column("if_over_quota", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "id", name=op.f("pk_ent_migrations")),
    )
    op.create_index("ix_ent_migrations_recent", "ent_migrations", ["tenant", "created_at"])
    op.create_table(
        "ent_migration_items",
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("migration_id", key_string(64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("subscription_id", key_string(64), nullable=False),
        sa.Column("owner_kind", key_string(64), nullable=False),
        sa.Column("owner_id", key_string(255), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("why", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("done_at", UtcDateTime(), nullable=True),
        sa.Column("moved_from", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant", "migration_id", "seq", name=op.f("pk_ent_migration_items")
        ),
    )
    op.create_index(
        "ix_ent_migration_items_status",
        "ent_migration_items",
        ["tenant", "migration_id", "status", "seq"],
    )
    op.create_index(
        "ix_ent_migration_items_subscription",
        "ent_migration_items",
        ["tenant", "subscription_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_ent_migration_items_subscription", table_name="ent_migration_items")
    op.drop_index("ix_ent_migration_items_status", table_name="ent_migration_items")
    op.drop_table("ent_migration_items")
    op.drop_index("ix_ent_migrations_recent", table_name="ent_migrations")
    op.drop_table("ent_migrations")
