"""initial schema"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import (
    JSON,
    OWNER,
    override_terms,
    owner,
    row_key,
    subscription_state,
)
from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0001", None


def upgrade() -> None:
    op.create_table(
        "ent_audit_events",
        row_key(),
        sa.Column("id", key_string(64), nullable=False),
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", key_string(400), nullable=False),
        sa.Column("owner_kind", key_string(64), nullable=True),
        sa.Column("owner_id", key_string(255), nullable=True),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ent_audit_events")),
        sa.UniqueConstraint("id", name=op.f("uq_ent_audit_events_id")),
    )
    op.create_index("ix_ent_audit_events_owner", "ent_audit_events", [*OWNER, "pk"])
    op.create_index("ix_ent_audit_events_target", "ent_audit_events", ["tenant", "target"])

    op.create_table(
        "ent_overrides",
        *owner(),
        sa.Column("kind", key_string(8), nullable=False),
        sa.Column("key", key_string(64), nullable=False),
        *override_terms(),
        sa.PrimaryKeyConstraint(*OWNER, "kind", "key", name=op.f("pk_ent_overrides")),
    )
    op.create_index("ix_ent_overrides_expiry", "ent_overrides", ["tenant", "expires_at"])

    op.create_table(
        "ent_plans",
        sa.Column("key", key_string(64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_kinds", JSON, nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_ent_plans")),
    )
    op.create_table(
        "ent_plan_versions",
        sa.Column("plan_key", key_string(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("limits", JSON, nullable=False),
        sa.Column("features", JSON, nullable=False),
        sa.Column("price_amount", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("price_currency", sa.String(length=3), nullable=True),
        sa.Column("cycle_unit", sa.String(length=8), nullable=True),
        sa.Column("cycle_every", sa.Integer(), nullable=True),
        sa.Column("trial_days", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_key"], ["ent_plans.key"], name=op.f("fk_ent_plan_versions_plan_key_ent_plans")
        ),
        sa.PrimaryKeyConstraint("plan_key", "version", name=op.f("pk_ent_plan_versions")),
    )
    op.create_table(
        "ent_subscriptions",
        row_key(),
        sa.Column("id", key_string(64), nullable=False),
        *owner(),
        sa.Column("live_owner", key_string(64), nullable=True),
        sa.Column("plan_key", key_string(64), nullable=False),
        *subscription_state(),
        sa.Column("next_change_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["plan_key"], ["ent_plans.key"], name=op.f("fk_ent_subscriptions_plan_key_ent_plans")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ent_subscriptions")),
        sa.UniqueConstraint("id", name=op.f("uq_ent_subscriptions_id")),
        sa.UniqueConstraint("live_owner", name=op.f("uq_ent_subscriptions_live_owner")),
    )
    op.create_index("ix_ent_subscriptions_due", "ent_subscriptions", ["tenant", "next_change_at"])
    op.create_index("ix_ent_subscriptions_owner", "ent_subscriptions", [*OWNER, "pk"])
    op.create_index("ix_ent_subscriptions_plan", "ent_subscriptions", ["tenant", "plan_key"])


def downgrade() -> None:
    op.drop_index("ix_ent_subscriptions_plan", table_name="ent_subscriptions")
    op.drop_index("ix_ent_subscriptions_owner", table_name="ent_subscriptions")
    op.drop_index("ix_ent_subscriptions_due", table_name="ent_subscriptions")

    op.drop_table("ent_subscriptions")
    op.drop_table("ent_plan_versions")
    op.drop_table("ent_plans")
    op.drop_index("ix_ent_overrides_expiry", table_name="ent_overrides")

    op.drop_table("ent_overrides")
    op.drop_index("ix_ent_audit_events_target", table_name="ent_audit_events")
    op.drop_index("ix_ent_audit_events_owner", table_name="ent_audit_events")

    op.drop_table("ent_audit_events")
