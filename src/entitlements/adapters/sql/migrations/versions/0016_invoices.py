"""invoices: charges on plan versions, finalized invoices and their lines, a gapless
number sequence per prefix, and when a subscription's oldest open invoice falls due

Existing plan versions charge nothing besides their flat price (``billing`` NULL), and
no subscription has an invoice yet (``payment_due_at`` NULL), so nothing is backfilled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.migrations import columns
from entitlements.adapters.sql.types import UtcDateTime, key_string

revision, down_revision = "0016", "0015"


def upgrade() -> None:
    op.add_column("ent_plan_versions", sa.Column("billing", columns.JSON, nullable=True))
    for table in ("ent_subscriptions", "ent_subscription_history"):
        op.add_column(table, sa.Column("payment_due_at", UtcDateTime(), nullable=True))
    op.create_table(
        "ent_invoices",
        columns.row_key(),
        sa.Column("id", key_string(64), nullable=False),
        *columns.owner(),
        sa.Column("number", key_string(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subscription_id", key_string(64), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=True),
        sa.Column("period_end", UtcDateTime(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.Numeric(24, 6), nullable=False),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("credits", key_string(64), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("paid_at", UtcDateTime(), nullable=True),
        sa.Column("payment_reference", sa.String(255), nullable=True),
        sa.Column("voided_at", UtcDateTime(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_ent_invoices")),
        sa.UniqueConstraint("id", name=op.f("uq_ent_invoices_id")),
        sa.UniqueConstraint("tenant", "number", name="uq_ent_invoices_number"),
        sa.UniqueConstraint(*columns.OWNER, "period_start", name="uq_ent_invoices_period"),
    )
    op.create_index("ix_ent_invoices_owner", "ent_invoices", [*columns.OWNER, "pk"])
    op.create_table(
        "ent_invoice_lines",
        sa.Column("invoice_id", key_string(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_amount", sa.Numeric(24, 6), nullable=False),
        sa.Column("starts_at", UtcDateTime(), nullable=False),
        sa.Column("ends_at", UtcDateTime(), nullable=False),
        sa.Column("exact", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(24, 6), nullable=False),
        sa.PrimaryKeyConstraint("invoice_id", "position", name=op.f("pk_ent_invoice_lines")),
    )
    op.create_table(
        "ent_invoice_counters",
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("prefix", key_string(32), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "prefix", name=op.f("pk_ent_invoice_counters")),
    )


def downgrade() -> None:
    op.drop_table("ent_invoice_counters")
    op.drop_table("ent_invoice_lines")
    op.drop_index("ix_ent_invoices_owner", table_name="ent_invoices")
    op.drop_table("ent_invoices")
    for table in ("ent_subscription_history", "ent_subscriptions"):
        op.drop_column(table, "payment_due_at")
    op.drop_column("ent_plan_versions", "billing")
