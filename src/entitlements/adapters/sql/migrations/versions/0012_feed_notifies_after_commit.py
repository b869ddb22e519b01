"""the change feed wakes followers after commit, not from a trigger; an index for
the owner list


PostgreSQL serializes the commits of all transactions that called NOTIFY in a database
on one lock; with a trigger on ``ent_changes`` every consumption was such a transaction,
and it waited there holding its counter's row lock, so writers of one owner queued
behind each other's commits. Writers now send the wake-up themselves once their
transaction has committed, coalesced (see ``entitlements.adapters.sql.hints``).

``ix_ent_subscriptions_recent`` (tenant, pk) lets the owner list read a tenant's newest
subscriptions a page at a time instead of sorting all of them.
"""

from __future__ import annotations

from alembic import op

revision, down_revision = "0012", "0011"

NOTIFY_CHANNEL = "entitlements_changes"


def upgrade() -> None:
    op.create_index(
        "ix_ent_subscriptions_recent", "ent_subscriptions", ["tenant", "pk"], unique=False
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ent_changes_notify ON ent_changes")
        op.execute("DROP FUNCTION IF EXISTS ent_changes_notify()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ent_changes_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER ent_changes_notify AFTER INSERT ON ent_changes "
            "FOR EACH STATEMENT EXECUTE FUNCTION ent_changes_notify()"
        )
    op.drop_index("ix_ent_subscriptions_recent", table_name="ent_subscriptions")
