"""Column types and column groups the shipped migrations share.

Frozen. A released migration must build the same schema forever: a database upgraded
long ago and one upgraded today have to end up alike, or the next migration meets a
table it was not written for. The migrations take these helpers from here, so nothing
in this module may ever change what it returns; a migration that needs something else
gets a new function beside the old ones, and an old one stays as long as a migration
calls it. For the same reason the migrations do not build on `entitlements.adapters.sql.tables`:
that is the live schema, which moves on with each release, while each group here is
the schema as it stood when the migrations naming it were written.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from entitlements.adapters.sql.types import UtcDateTime, key_string

__all__ = ["JSON", "OWNER", "ROW_ID", "override_terms", "owner", "row_key", "subscription_state"]

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON documents; JSONB on PostgreSQL."""

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""A 64-bit surrogate key (SQLite only auto-increments INTEGER)."""

OWNER = ("tenant", "owner_kind", "owner_id")
"""The owner's columns, in the order keys and indexes name them."""


def row_key(name: str = "pk") -> sa.Column[Any]:
    """An auto-incrementing surrogate key column; the table's primary key names it."""
    return sa.Column(name, ROW_ID, autoincrement=True, nullable=False)


def owner(*, nullable: bool = False) -> list[sa.Column[Any]]:
    """``tenant``, ``owner_kind`` and ``owner_id``: whom an owner-related row is about."""
    return [
        sa.Column("tenant", key_string(255), nullable=nullable),
        sa.Column("owner_kind", key_string(64), nullable=nullable),
        sa.Column("owner_id", key_string(255), nullable=nullable),
    ]


def subscription_state() -> list[sa.Column[Any]]:
    """A subscription's state as revision 0001 stored it (``plan_version`` through
    ``revision``); 0010's history repeats it in every stretch."""
    return [
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=True),
        sa.Column("trial_ends_at", UtcDateTime(), nullable=True),
        sa.Column("period_start", UtcDateTime(), nullable=True),
        sa.Column("period_end", UtcDateTime(), nullable=True),
        sa.Column("cycle_unit", sa.String(length=8), nullable=True),
        sa.Column("cycle_every", sa.Integer(), nullable=True),
        sa.Column("cycle_anchor", UtcDateTime(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("canceled_at", UtcDateTime(), nullable=True),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("past_due_since", UtcDateTime(), nullable=True),
        sa.Column("suspended_from", sa.String(length=16), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("addons", JSON, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
    ]


def override_terms() -> list[sa.Column[Any]]:
    """What an override says (``reason`` through ``value``) as revision 0001 stored it;
    0010's history repeats it in every stretch."""
    return [
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("actions", JSON, nullable=True),
        sa.Column("value", sa.BigInteger(), nullable=True),
    ]
