"""binding terms: the plan manager and the converted-from contract as subscription
columns, the terms a contract pins, and the provider command outbox
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations.columns import JSON, OWNER
from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0007", "0006"

_subscriptions = sa.table(
    "ent_subscriptions",
    sa.column("pk", sa.BigInteger()),
    sa.column("metadata", JSON),
    sa.column("plan_manager", sa.String(255)),
)


def _move_plan_managers(to_column: bool) -> None:
    """Seed 003's plan manager lived in ``metadata["plan_manager"]``; it moves to its own
    column (and back on downgrade)."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_subscriptions.c.pk, _subscriptions.c.metadata, _subscriptions.c.plan_manager)
    ).all()
    for pk, document, manager in rows:
        meta: dict[str, Any] = dict(document or {})
        if to_column:
            found = meta.pop("plan_manager", None)
            if not isinstance(found, str) or not found:
                continue
            values: dict[str, Any] = {"metadata": meta, "plan_manager": found[:255]}
        else:
            if manager is None:
                continue
            values = {"metadata": {**meta, "plan_manager": manager}}
        bind.execute(_subscriptions.update().where(_subscriptions.c.pk == pk).values(**values))


def upgrade() -> None:
    with op.batch_alter_table("ent_subscriptions") as batch:
        batch.add_column(sa.Column("plan_manager", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("contract", JSON, nullable=True))
    _move_plan_managers(to_column=True)
    with op.batch_alter_table("ent_contracts") as batch:
        batch.add_column(sa.Column("plan_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("seats", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cycle_unit", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("cycle_every", sa.Integer(), nullable=True))
    op.create_table(
        "ent_provider_commands",
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("id", key_string(64), nullable=False),
        sa.Column("owner_kind", key_string(64), nullable=False),
        sa.Column("owner_id", key_string(255), nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("idempotency_key", key_string(128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.PrimaryKeyConstraint("tenant", "id", name=op.f("pk_ent_provider_commands")),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_ent_provider_commands_key"),
    )
    op.create_index(
        "ix_ent_provider_commands_due",
        "ent_provider_commands",
        ["tenant", "status", "next_attempt_at"],
    )
    op.create_index("ix_ent_provider_commands_owner", "ent_provider_commands", [*OWNER])


def downgrade() -> None:
    op.drop_index("ix_ent_provider_commands_owner", table_name="ent_provider_commands")
    op.drop_index("ix_ent_provider_commands_due", table_name="ent_provider_commands")
    op.drop_table("ent_provider_commands")
    with op.batch_alter_table("ent_contracts") as batch:
        batch.drop_column("cycle_every")
        batch.drop_column("cycle_unit")
        batch.drop_column("seats")
        batch.drop_column("plan_version")
    _move_plan_managers(to_column=False)
    with op.batch_alter_table("ent_subscriptions") as batch:
        batch.drop_column("contract")
        batch.drop_column("plan_manager")
