"""pending changes and pauses: a subscription's one scheduled change and its pause

Both are kept on the subscription row (and repeated in its history stretches) as JSON
documents: at most one pending change per subscription holds by construction, it is
written under the row's revision check with the rest of the subscription, and a reading
of the row has everything `as_of` needs to apply it at its instant.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import JSON

revision, down_revision = "0013", "0012"

_TABLES = ("ent_subscriptions", "ent_subscription_history")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("scheduled", JSON, nullable=True))
            batch.add_column(sa.Column("pause", JSON, nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("pause")
            batch.drop_column("scheduled")
