"""contracts"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

from entitlements.adapters.sql.migrations.columns import JSON, OWNER, owner
from entitlements.adapters.sql.types import UtcDateTime, key_string, long_binary, long_text

revision, down_revision = "0003", "0002"


def _part_of_contract(table: str) -> list[SchemaItem]:
    """The contract a row of ``table`` (attachments, events, signers) belongs to."""
    return [
        sa.Column("contract_id", key_string(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["ent_contracts.id"],
            name=op.f(f"fk_{table}_contract_id_ent_contracts"),
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "ent_contracts",
        sa.Column("id", key_string(64), nullable=False),
        *owner(),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", long_text(), nullable=False),
        sa.Column("plan_key", key_string(64), nullable=True),
        sa.Column("term", sa.String(length=200), nullable=True),
        sa.Column("amount", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("sequential", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("terms_hash", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ent_contracts")),
    )
    op.create_index("ix_ent_contracts_expiry", "ent_contracts", ["tenant", "status", "expires_at"])
    op.create_index("ix_ent_contracts_owner", "ent_contracts", [*OWNER])

    op.create_table(
        "ent_personal_data",
        sa.Column("commitment", key_string(64), nullable=False),
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("salt", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("commitment", name=op.f("pk_ent_personal_data")),
    )
    op.create_table(
        "ent_contract_attachments",
        *_part_of_contract("ent_contract_attachments"),
        sa.Column("digest", key_string(64), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("data", long_binary(), nullable=False),
        sa.PrimaryKeyConstraint("contract_id", "digest", name=op.f("pk_ent_contract_attachments")),
    )
    op.create_table(
        "ent_contract_events",
        *_part_of_contract("ent_contract_events"),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("signer_id", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=64), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("contract_id", "seq", name=op.f("pk_ent_contract_events")),
    )
    op.create_table(
        "ent_contract_signers",
        *_part_of_contract("ent_contract_signers"),
        sa.Column("id", key_string(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("signing_order", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("token_hash", key_string(64), nullable=True),
        sa.Column("token_expires_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("contract_id", "id", name=op.f("pk_ent_contract_signers")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_ent_contract_signers_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("ent_contract_signers")
    op.drop_table("ent_contract_events")
    op.drop_table("ent_contract_attachments")
    op.drop_table("ent_personal_data")
    op.drop_index("ix_ent_contracts_owner", table_name="ent_contracts")
    op.drop_index("ix_ent_contracts_expiry", table_name="ent_contracts")

    op.drop_table("ent_contracts")
