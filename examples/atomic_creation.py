"""Seed 002's atomic creation: the host inserts its own customer row and the library
creates the customer's subscription in the same database transaction. If either part
fails, neither is stored — you cannot end up with a customer that has no entitlement.

    python examples/atomic_creation.py [DATABASE_URL]      # default: a SQLite file
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

from entitlements import Entitlements, EntitlementsError, Owner, Plan
from entitlements.adapters.sql import SqlStore

host_metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    host_metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
)


def create_customer(ents: Entitlements, customer_id: str, name: str, plan: str) -> None:
    """The host's own use case: one transaction for its row and our subscription."""
    with ents.store.engine.begin() as connection:  # type: ignore[attr-defined]
        connection.execute(customers.insert().values(id=customer_id, name=name))
        with ents.atomic(join=connection):
            ents.subscriptions.start_trial(
                Owner("customer", customer_id), plan, actor="staff:signup"
            )


def main(url: str) -> None:
    store = SqlStore.from_url(url)
    store.create_schema()
    host_metadata.create_all(store.engine)
    ents = Entitlements(store)
    ents.plans.define(Plan("starter", "Starter", status="active"), actor="staff:setup")
    ents.plans.define(Plan("beta", "Beta (draft)"), actor="staff:setup")

    create_customer(ents, "c-1", "Acme", "starter")
    try:
        create_customer(ents, "c-2", "Globex", "beta")  # a draft plan cannot be assigned
    except EntitlementsError as error:
        print(f"refused: {error}")

    with store.engine.connect() as connection:
        stored = [row.id for row in connection.execute(sa.select(customers.c.id))]
    print("customers stored:", stored)
    for customer_id in ("c-1", "c-2"):
        found = ents.subscriptions.find(Owner("customer", customer_id))
        print(f"subscription of {customer_id}:", found.status.value if found else None)


if __name__ == "__main__":
    default = f"sqlite:///{Path(tempfile.mkdtemp()) / 'atomic.db'}"
    main(sys.argv[1] if len(sys.argv) > 1 else default)
