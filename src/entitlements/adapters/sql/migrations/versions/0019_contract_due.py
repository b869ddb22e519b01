"""contracts carry the instant the sweep has something to do for them next

The sweep wrote "left unsigned" and "signing link expiring" notices by loading every
contract out for signature on every run, so a sweep with nothing to tell cost more as
contracts piled up. Each contract now stores ``next_due_at`` (NULL: nothing to do until
it is written again), indexed with the tenant, and the sweep reads the contracts due.
Existing contracts out for signature are due at once (at their ``created_at``): the
first sweep looks at each of them one time and moves it to its next notice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.types import UtcDateTime

revision, down_revision = "0019", "0018"

_AWAITING = ("sent", "viewed", "signed")


def upgrade() -> None:
    with op.batch_alter_table("ent_contracts") as batch:
        batch.add_column(sa.Column("next_due_at", UtcDateTime(), nullable=True))
    contracts = sa.table(
        "ent_contracts",
        sa.column("status", sa.String()),
        sa.column("created_at", UtcDateTime()),
        sa.column("next_due_at", UtcDateTime()),
    )
    op.execute(
        contracts.update()
        .where(contracts.c.status.in_(_AWAITING))
        .values(next_due_at=contracts.c.created_at)
    )
    op.create_index(
        "ix_ent_contracts_due", "ent_contracts", ["tenant", "next_due_at", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ent_contracts_due", table_name="ent_contracts")
    with op.batch_alter_table("ent_contracts") as batch:
        batch.drop_column("next_due_at")
