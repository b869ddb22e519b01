"""signing failures: the signing page's bad-token limit, shared by every process"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import row_key

revision, down_revision = "0011", "0010"


def upgrade() -> None:
    op.create_table(
        "ent_signing_failures",
        row_key(),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ent_signing_failures")),
    )
    op.create_index("ix_ent_signing_failures_client", "ent_signing_failures", ["client", "at_ms"])
    op.create_index("ix_ent_signing_failures_at", "ent_signing_failures", ["at_ms"])


def downgrade() -> None:
    op.drop_index("ix_ent_signing_failures_at", table_name="ent_signing_failures")
    op.drop_index("ix_ent_signing_failures_client", table_name="ent_signing_failures")
    op.drop_table("ent_signing_failures")
