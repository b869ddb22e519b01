"""subscriptions by status and next change: the sweep's scan for trials and pauses ending

The scan for "your trial ends in N days" read every subscription whose next change fell
within the notice horizon — every renewal too — so a sweep with nothing to tell cost more
as the host grew. With this index it reads the trials and pauses in the window only.
"""

from __future__ import annotations

from alembic import op

revision, down_revision = "0018", "0017"


def upgrade() -> None:
    op.create_index(
        "ix_ent_subscriptions_status_due",
        "ent_subscriptions",
        ["tenant", "status", "next_change_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_ent_subscriptions_status_due", table_name="ent_subscriptions")
