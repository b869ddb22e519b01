"""tenant rules: a lock row per tenant-wide rule; ledger keys pruned by age"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.types import key_string

revision, down_revision = "0006", "0005"


def upgrade() -> None:
    op.create_table(
        "ent_tenant_locks",
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("rule", key_string(64), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "rule", name=op.f("pk_ent_tenant_locks")),
    )
    op.create_index("ix_ent_usage_records_at", "ent_usage_records", ["tenant", "at"])


def downgrade() -> None:
    op.drop_index("ix_ent_usage_records_at", table_name="ent_usage_records")
    op.drop_table("ent_tenant_locks")
