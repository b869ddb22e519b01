"""every owner with usage counters has a terms revision row

A terms write that creates an owner's revision row knows, from that alone, that the
owner has no counters to stamp. Counters written before this revision could exist
without the row; this gives them one (revision 0, what such owners resolved at).
"""

from __future__ import annotations

from alembic import op

revision, down_revision = "0009", "0008"


def upgrade() -> None:
    op.execute(
        "INSERT INTO ent_owner_revisions (tenant, owner_kind, owner_id, revision) "
        "SELECT DISTINCT c.tenant, c.owner_kind, c.owner_id, 0 FROM ent_usage_counters c "
        "WHERE NOT EXISTS (SELECT 1 FROM ent_owner_revisions r WHERE r.tenant = c.tenant "
        "AND r.owner_kind = c.owner_kind AND r.owner_id = c.owner_id)"
    )


def downgrade() -> None:
    pass  # the rows say nothing an older schema could not hold
