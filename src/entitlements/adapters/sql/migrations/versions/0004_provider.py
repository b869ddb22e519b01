"""provider"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0004", "0003"


def upgrade() -> None:
    op.create_table(
        "ent_provider_events",
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("event_id", key_string(255), nullable=False),
        sa.Column("seen_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "event_id", name=op.f("pk_ent_provider_events")),
    )
    op.create_table(
        "ent_provider_links",
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("external_id", key_string(255), nullable=False),
        sa.Column("owner_kind", key_string(64), nullable=False),
        sa.Column("owner_id", key_string(255), nullable=False),
        sa.Column("last_applied_at", UtcDateTime(), nullable=True),
        sa.Column("checkout_id", key_string(255), nullable=True),
        sa.Column("plan_key", key_string(64), nullable=True),
        sa.Column("manager", sa.String(length=255), nullable=True),
        sa.Column("subscription_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "external_id", name=op.f("pk_ent_provider_links")),
    )
    op.create_index(
        "ix_ent_provider_links_checkout", "ent_provider_links", ["tenant", "checkout_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_ent_provider_links_checkout", table_name="ent_provider_links")

    op.drop_table("ent_provider_links")
    op.drop_table("ent_provider_events")
