"""change feed: owner terms revisions, the feed, counters that carry their terms"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import OWNER, owner, row_key
from entitlements.adapters.sql.types import UtcDateTime

revision, down_revision = "0005", "0004"

NOTIFY_CHANNEL = "entitlements_changes"


def upgrade() -> None:
    op.create_table(
        "ent_owner_revisions",
        *owner(),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*OWNER, name=op.f("pk_ent_owner_revisions")),
    )
    op.create_table(
        "ent_changes",
        row_key("seq"),
        *owner(nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_ent_changes")),
    )
    op.create_index("ix_ent_changes_at", "ent_changes", ["at"])
    op.create_table(
        "ent_feed_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ent_feed_state")),
    )
    with op.batch_alter_table("ent_usage_counters") as batch:
        batch.add_column(
            sa.Column("terms_revision", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("held_until", UtcDateTime(), nullable=True))
    op.create_index("ix_ent_reservations_held", "ent_reservations", [*OWNER, "metric", "status"])
    if op.get_bind().dialect.name == "postgresql":
        # a wake-up hint for followers; the feed itself stays the source of truth
        op.execute(
            "CREATE OR REPLACE FUNCTION ent_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER ent_changes_notify AFTER INSERT ON ent_changes "
            "FOR EACH STATEMENT EXECUTE FUNCTION ent_changes_notify()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ent_changes_notify ON ent_changes")
        op.execute("DROP FUNCTION IF EXISTS ent_changes_notify()")
    op.drop_index("ix_ent_reservations_held", table_name="ent_reservations")
    with op.batch_alter_table("ent_usage_counters") as batch:
        batch.drop_column("held_until")
        batch.drop_column("terms_revision")
    op.drop_table("ent_feed_state")
    op.drop_index("ix_ent_changes_at", table_name="ent_changes")
    op.drop_table("ent_changes")
    op.drop_table("ent_owner_revisions")
