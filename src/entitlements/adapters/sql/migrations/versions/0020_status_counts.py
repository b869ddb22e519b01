"""how many owners' most recent subscriptions are stored in each status, kept as changes

The console's front page counted owners by status by listing up to 1,000 owners per
tenant: a cost that grew with owners, and a count cut at 1,000. ``ent_status_counts``
holds rows ``(tenant, status, delta)`` that every subscription write appends to in its
own transaction, and a read sums. Filled here with one row per tenant and status: the
owners whose most recent subscription is stored in it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.types import key_string, row_id

revision, down_revision = "0020", "0019"


def upgrade() -> None:
    op.create_table(
        "ent_status_counts",
        sa.Column("pk", row_id(), autoincrement=True, nullable=False),
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ent_status_counts")),
    )
    op.create_index(
        "ix_ent_status_counts_tenant", "ent_status_counts", ["tenant", "status", "delta"]
    )
    subscriptions = sa.table(
        "ent_subscriptions",
        *(sa.column(name) for name in ("pk", "tenant", "owner_kind", "owner_id", "status")),
    )
    s = subscriptions.c
    newer = subscriptions.alias("newer")
    latest = ~sa.exists().where(
        newer.c.tenant == s.tenant,
        newer.c.owner_kind == s.owner_kind,
        newer.c.owner_id == s.owner_id,
        newer.c.pk > s.pk,
    )
    counts = sa.table("ent_status_counts", *(sa.column(n) for n in ("tenant", "status", "delta")))
    op.execute(
        counts.insert().from_select(
            ["tenant", "status", "delta"],
            sa.select(s.tenant, s.status, sa.func.count())
            .where(latest)
            .group_by(s.tenant, s.status),
        )
    )


def downgrade() -> None:
    op.drop_index("ix_ent_status_counts_tenant", table_name="ent_status_counts")
    op.drop_table("ent_status_counts")
