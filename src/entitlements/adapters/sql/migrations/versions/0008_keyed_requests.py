"""keyed requests: mutations remembered by their idempotency key"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import JSON, OWNER, owner
from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0008", "0007"


def upgrade() -> None:
    op.create_table(
        "ent_requests",
        *owner(),
        sa.Column("key", key_string(128), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("outcome", JSON, nullable=False),
        sa.PrimaryKeyConstraint(*OWNER, "key", name=op.f("pk_ent_requests")),
    )
    op.create_index("ix_ent_requests_at", "ent_requests", ["tenant", "at"])


def downgrade() -> None:
    op.drop_index("ix_ent_requests_at", table_name="ent_requests")
    op.drop_table("ent_requests")
