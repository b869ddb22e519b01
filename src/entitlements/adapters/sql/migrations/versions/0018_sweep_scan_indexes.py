"""what the sweep scans for notices, read through an index each

The scan for "your trial ends in N days" read every subscription whose next change fell
within the notice horizon — every renewal too — so a sweep with nothing to tell cost more
as the host grew; with the first index it reads the trials and pauses in the window only.
Invoices falling due or overdue were found by reading every invoice of the tenant; the
second index reads the open ones by due date.
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
    op.create_index(
        "ix_ent_invoices_open_due", "ent_invoices", ["tenant", "status", "due_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ent_invoices_open_due", table_name="ent_invoices")
    op.drop_index("ix_ent_subscriptions_status_due", table_name="ent_subscriptions")
