"""contracts carry the instant the sweep has something to do for them next; the owner
search reads trigram postings

The sweep wrote "left unsigned" and "signing link expiring" notices by loading every
contract out for signature on every run, so a sweep with nothing to tell cost more as
contracts piled up. Each contract now stores ``next_due_at`` (NULL: nothing to do until
it is written again), indexed with the tenant, and the sweep reads the contracts due.
Existing contracts out for signature are due at once (at their ``created_at``): the
first sweep looks at each of them one time and moves it to its next notice.

A text search of the owner list scanned the tenant's newest 5,000 subscription rows per
page. ``ent_search_grams`` holds each trigram of every subscription row's owner id and
external id with the row's pk (written with the row from now on, filled
here for the rows there are), so a search reads the postings of its rarest trigram.
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

from entitlements.adapters.sql.types import UtcDateTime, key_string, row_id

revision, down_revision = "0019", "0018"

_AWAITING = ("sent", "viewed", "signed")
_BATCH = 2000


def _grams(values: tuple[str | None, ...]) -> set[str]:
    """The trigrams a row is found by, as this revision indexes them (a copy: the live
    code may move on, this migration may not)."""
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        lowered = value.lower()
        ascii_lowered = "".join(c.lower() if "A" <= c <= "Z" else c for c in value)
        unaccented = "".join(
            c for c in unicodedata.normalize("NFKD", lowered) if not unicodedata.combining(c)
        )
        for variant in {lowered, ascii_lowered, unaccented}:
            found.update(variant[i : i + 3] for i in range(len(variant) - 2))
    return found


def _search_grams() -> None:
    op.create_table(
        "ent_search_grams",
        sa.Column("tenant", key_string(255), nullable=False),
        sa.Column("gram", sa.String(length=12), nullable=False),
        sa.Column("sub_pk", row_id(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "gram", "sub_pk"),
    )
    grams = sa.table(
        "ent_search_grams",
        sa.column("tenant", sa.String()),
        sa.column("gram", sa.String()),
        sa.column("sub_pk", sa.BigInteger()),
    )
    subscriptions = sa.table(
        "ent_subscriptions",
        sa.column("pk", sa.BigInteger()),
        sa.column("tenant", sa.String()),
        sa.column("owner_id", sa.String()),
        sa.column("external_id", sa.String()),
    )
    connection = op.get_bind()
    after = None
    while True:
        s = subscriptions.c
        query = sa.select(s.pk, s.tenant, s.owner_id, s.external_id).order_by(s.pk)
        if after is not None:
            query = query.where(s.pk > after)
        rows = connection.execute(query.limit(_BATCH)).all()
        if not rows:
            return
        postings = {
            (row.tenant, gram, row.pk)
            for row in rows
            for gram in _grams((row.owner_id, row.external_id))
        }
        if postings:
            # distinct here, a variant's accented and unaccented trigrams may be one key
            # where the gram column compares accents away (MariaDB's collation)
            insert = grams.insert()
            if connection.dialect.name in ("mysql", "mariadb"):
                insert = insert.prefix_with("IGNORE")
            connection.execute(
                insert,
                [{"tenant": a, "gram": b, "sub_pk": c} for a, b, c in sorted(postings)],
            )
        after = rows[-1].pk


def upgrade() -> None:
    op.add_column("ent_contracts", sa.Column("next_due_at", UtcDateTime(), nullable=True))
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
    _search_grams()


def downgrade() -> None:
    op.drop_table("ent_search_grams")
    op.drop_index("ix_ent_contracts_due", table_name="ent_contracts")
    if op.get_bind().dialect.name == "sqlite":
        # a batch copy of the table would break its signers' and events' foreign keys
        op.execute("ALTER TABLE ent_contracts DROP COLUMN next_due_at")
    else:
        op.drop_column("ent_contracts", "next_due_at")
