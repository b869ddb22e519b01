"""indexes that read a list a page at a time in the list's own order

A page of an owner's contracts is read in (created_at, id) order and a page of one
record's audit events in the audit trail's own order (pk): with these indexes a page
walks the index from the cursor and stops after the page, instead of reading and sorting
every contract of the owner or every event of the tenant's target.
"""

from __future__ import annotations

from alembic import op

revision, down_revision = "0017", "0016"


def upgrade() -> None:
    op.drop_index("ix_ent_contracts_owner", table_name="ent_contracts")
    op.create_index(
        "ix_ent_contracts_owner",
        "ent_contracts",
        ["tenant", "owner_kind", "owner_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index("ix_ent_audit_events_target", table_name="ent_audit_events")
    op.create_index(
        "ix_ent_audit_events_target", "ent_audit_events", ["target", "pk"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ent_audit_events_target", table_name="ent_audit_events")
    op.create_index(
        "ix_ent_audit_events_target", "ent_audit_events", ["tenant", "target"], unique=False
    )
    op.drop_index("ix_ent_contracts_owner", table_name="ent_contracts")
    op.create_index(
        "ix_ent_contracts_owner",
        "ent_contracts",
        ["tenant", "owner_kind", "owner_id"],
        unique=False,
    )
