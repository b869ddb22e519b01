"""The SQL schema, as SQLAlchemy Core tables on a dedicated `metadata`.

Hosts that manage their schema with Alembic can add ``metadata`` to their environment's
``target_metadata`` (it has its own naming convention, and every table is prefixed
``ent_``), or run the migrations shipped with the package (`migrations.upgrade`).

Every owner-related row carries its ``tenant`` ('' for none) and every query filters on
it. Plans are the host product's catalog and are shared by all tenants.
"""

from __future__ import annotations

import sqlalchemy as sa

from entitlements.adapters.sql.types import (
    JSONDocument,
    UtcDateTime,
    key_string,
    long_binary,
    long_text,
    row_id,
)

__all__ = [
    "audit_events",
    "changes",
    "contract_attachments",
    "contract_events",
    "contract_signers",
    "contracts",
    "feed_state",
    "invoice_counters",
    "invoice_lines",
    "invoices",
    "metadata",
    "migration_items",
    "migrations",
    "notifications",
    "override_history",
    "overrides",
    "owner_revisions",
    "personal_data",
    "plan_versions",
    "plans",
    "provider_commands",
    "provider_events",
    "provider_links",
    "requests",
    "reservations",
    "seat_assignments",
    "subscription_history",
    "subscriptions",
    "tenant_locks",
    "usage_counters",
    "usage_records",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

TENANT = 255
OWNER_KIND = 64
OWNER_ID = 255
KEY = 64
IDEMPOTENCY_KEY = 128
MEMBER = 128
NOTIFICATION_KEY = 128

_OWNER = ("tenant", "owner_kind", "owner_id")
"""The columns naming an owner, in the order keys and indexes list them."""


def _owner(*, primary_key: bool = False, nullable: bool = False) -> list[sa.Column[str]]:
    """The owner an owner-related row is about: part of its key, or plain columns."""
    lengths = (TENANT, OWNER_KIND, OWNER_ID)
    types = [(name, key_string(length)) for name, length in zip(_OWNER, lengths, strict=True)]
    if primary_key:
        return [sa.Column(name, type_, primary_key=True) for name, type_ in types]
    return [sa.Column(name, type_, nullable=nullable) for name, type_ in types]


plans = sa.Table(
    "ent_plans",
    metadata,
    sa.Column("key", key_string(KEY), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("owner_kinds", JSONDocument, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
)

plan_versions = sa.Table(
    "ent_plan_versions",
    metadata,
    sa.Column("plan_key", key_string(KEY), sa.ForeignKey("ent_plans.key"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("limits", JSONDocument, nullable=False),
    sa.Column("features", JSONDocument, nullable=False),
    sa.Column("price_amount", sa.Numeric(18, 6), nullable=True),
    sa.Column("price_currency", sa.String(3), nullable=True),
    sa.Column("cycle_unit", sa.String(8), nullable=True),
    sa.Column("cycle_every", sa.Integer, nullable=True),
    sa.Column("trial_days", sa.Integer, nullable=False),
    # charges besides the flat price and the invoices' net days (0016): {"charges": [...],
    # "net_days": n}; NULL for a version without either
    sa.Column("billing", JSONDocument, nullable=True),
)


def _subscription_state() -> list[sa.Column[object]]:
    """The columns of a subscription's state, which its history repeats per stretch."""
    return [
        sa.Column("plan_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("seats", sa.Integer, nullable=True),
        sa.Column("trial_ends_at", UtcDateTime, nullable=True),
        sa.Column("period_start", UtcDateTime, nullable=True),
        sa.Column("period_end", UtcDateTime, nullable=True),
        sa.Column("cycle_unit", sa.String(8), nullable=True),
        sa.Column("cycle_every", sa.Integer, nullable=True),
        sa.Column("cycle_anchor", UtcDateTime, nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean, nullable=False),
        sa.Column("canceled_at", UtcDateTime, nullable=True),
        sa.Column("expires_at", UtcDateTime, nullable=True),
        sa.Column("past_due_since", UtcDateTime, nullable=True),
        sa.Column("suspended_from", sa.String(16), nullable=True),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("metadata", JSONDocument, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("addons", JSONDocument, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        # the one pending change (or pause still to begin), and the pause in force
        sa.Column("scheduled", JSONDocument, nullable=True),
        sa.Column("pause", JSONDocument, nullable=True),
    ]


def _payment_due() -> sa.Column[object]:
    """When the oldest open invoice staff bill directly falls due (0016)."""
    return sa.Column("payment_due_at", UtcDateTime, nullable=True)


subscriptions = sa.Table(
    "ent_subscriptions",
    metadata,
    sa.Column("pk", row_id(), primary_key=True, autoincrement=True),
    sa.Column("id", key_string(64), nullable=False, unique=True),
    *_owner(),
    # sha256 of the owner while the subscription is live, NULL once it ended: the unique
    # index makes "one live subscription per owner" hold against concurrent writers
    sa.Column("live_owner", key_string(64), nullable=True, unique=True),
    sa.Column("plan_key", key_string(KEY), sa.ForeignKey("ent_plans.key"), nullable=False),
    *_subscription_state(),
    # the earliest instant time alone changes the subscription: the sweep's index
    sa.Column("next_change_at", UtcDateTime, nullable=True),
    # seed 003: the member who subscribed to the paid plan (only they may change it)
    sa.Column("plan_manager", sa.String(255), nullable=True),
    # the signed contract this subscription was converted from, with its terms
    sa.Column("contract", JSONDocument, nullable=True),
    _payment_due(),
    sa.Index("ix_ent_subscriptions_owner", *_OWNER, "pk"),
    sa.Index("ix_ent_subscriptions_due", "tenant", "next_change_at"),
    sa.Index("ix_ent_subscriptions_status_due", "tenant", "status", "next_change_at"),
    sa.Index("ix_ent_subscriptions_plan", "tenant", "plan_key"),
    # the console's owner list: a tenant's rows newest first, read a page at a time
    sa.Index("ix_ent_subscriptions_recent", "tenant", "pk"),
)


search_grams = sa.Table(
    "ent_search_grams",
    metadata,
    # the owner search's postings: each trigram of a subscription row's owner id and
    # external id, and the row (see adapters/sql/search.py); the gram compares as the
    # external id does
    sa.Column("tenant", key_string(TENANT), primary_key=True),
    sa.Column("gram", sa.String(12), primary_key=True),
    sa.Column("sub_pk", row_id(), primary_key=True, autoincrement=False),
)


status_counts = sa.Table(
    "ent_status_counts",
    metadata,
    # how many owners' latest subscriptions are stored in each status, as changes: every
    # write appends its own rows (no row is updated, so writes of a tenant do not queue
    # on one row) and a read sums them (see adapters/sql/status_counts.py)
    sa.Column("pk", row_id(), primary_key=True, autoincrement=True),
    sa.Column("tenant", key_string(TENANT), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("delta", sa.BigInteger, nullable=False),
    sa.Index("ix_ent_status_counts_tenant", "tenant", "status", "delta"),
)


def _override_terms() -> list[sa.Column[object]]:
    """The columns of what an override says, which its history repeats per stretch."""
    return [
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("actions", JSONDocument, nullable=True),
        sa.Column("value", sa.BigInteger, nullable=True),
        sa.Column("alerts", JSONDocument, nullable=True),
    ]


overrides = sa.Table(
    "ent_overrides",
    metadata,
    *_owner(primary_key=True),
    sa.Column("kind", key_string(8), primary_key=True),
    sa.Column("key", key_string(KEY), primary_key=True),
    *_override_terms(),
    sa.Index("ix_ent_overrides_expiry", "tenant", "expires_at"),
)

# Effective-dated history, append-only: one row per write, in force from ``effective_at``
# (the instant of the write) until the next row of the same subscription or override; the
# highest ``seq`` wins among rows of one instant. Past answers read these, never the rows
# above, so removing an override or ending a subscription keeps what was in force.
subscription_history = sa.Table(
    "ent_subscription_history",
    metadata,
    sa.Column("seq", row_id(), primary_key=True, autoincrement=True),
    sa.Column("effective_at", UtcDateTime, nullable=False),
    sa.Column("id", key_string(64), nullable=False),
    *_owner(),
    sa.Column("plan_key", key_string(KEY), nullable=False),
    *_subscription_state(),
    sa.Column("plan_manager", sa.String(255), nullable=True),
    sa.Column("contract", JSONDocument, nullable=True),
    _payment_due(),
    sa.Index("ix_ent_subscription_history_owner", *_OWNER, "effective_at"),
)

override_history = sa.Table(
    "ent_override_history",
    metadata,
    sa.Column("seq", row_id(), primary_key=True, autoincrement=True),
    sa.Column("effective_at", UtcDateTime, nullable=False),
    *_owner(),
    sa.Column("kind", key_string(8), nullable=False),
    sa.Column("key", key_string(KEY), nullable=False),
    # false: the override was removed at effective_at (the other columns repeat it)
    sa.Column("present", sa.Boolean, nullable=False),
    *_override_terms(),
    sa.Index(
        "ix_ent_override_history_owner",
        "tenant",
        "owner_kind",
        "owner_id",
        "kind",
        "key",
        "effective_at",
    ),
)

audit_events = sa.Table(
    "ent_audit_events",
    metadata,
    sa.Column("pk", row_id(), primary_key=True, autoincrement=True),
    sa.Column("id", key_string(64), nullable=False, unique=True),
    sa.Column("tenant", key_string(TENANT), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", key_string(400), nullable=False),
    sa.Column("owner_kind", key_string(OWNER_KIND), nullable=True),
    sa.Column("owner_id", key_string(OWNER_ID), nullable=True),
    sa.Column("before", JSONDocument, nullable=True),
    sa.Column("after", JSONDocument, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Index("ix_ent_audit_events_owner", *_OWNER, "pk"),
    # one record's events in the trail's order, a page at a time
    sa.Index("ix_ent_audit_events_target", "target", "pk"),
)

usage_counters = sa.Table(
    "ent_usage_counters",
    metadata,
    *_owner(primary_key=True),
    sa.Column("metric", key_string(KEY), primary_key=True),
    sa.Column("period_start", UtcDateTime, primary_key=True),
    sa.Column("used", sa.BigInteger, nullable=False),
    sa.Column("reserved", sa.BigInteger, nullable=False),
    # the owner's terms revision this row's consumers enforce: a process holding older
    # terms is refused by the conditional UPDATE itself, not by a read before it
    sa.Column("terms_revision", sa.BigInteger, nullable=False, server_default="0"),
    # the earliest expiry among held reservations counted in `reserved` (NULL: none)
    sa.Column("held_until", UtcDateTime, nullable=True),
)

usage_records = sa.Table(
    "ent_usage_records",
    metadata,
    sa.Column("pk", row_id(), primary_key=True, autoincrement=True),
    sa.Column("id", key_string(64), nullable=False, unique=True),
    *_owner(),
    sa.Column("metric", key_string(KEY), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("period_start", UtcDateTime, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("key", key_string(IDEMPOTENCY_KEY), nullable=True),
    sa.UniqueConstraint(*_OWNER, "key", name="uq_ent_usage_records_key"),
    sa.Index("ix_ent_usage_records_period", *_OWNER, "metric", "period_start"),
    sa.Index("ix_ent_usage_records_at", "tenant", "at"),
)

reservations = sa.Table(
    "ent_reservations",
    metadata,
    sa.Column("id", key_string(64), primary_key=True),
    *_owner(),
    sa.Column("metric", key_string(KEY), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("period_start", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("committed", sa.BigInteger, nullable=False),
    sa.Column("key", key_string(IDEMPOTENCY_KEY), nullable=True),
    sa.Column("settled_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint(*_OWNER, "key", name="uq_ent_reservations_key"),
    sa.Index("ix_ent_reservations_due", "tenant", "status", "expires_at"),
    sa.Index("ix_ent_reservations_held", *_OWNER, "metric", "status"),
)

seat_assignments = sa.Table(
    "ent_seat_assignments",
    metadata,
    *_owner(primary_key=True),
    sa.Column("pool", key_string(KEY), primary_key=True),
    sa.Column("member", key_string(MEMBER), primary_key=True),
    sa.Column("assigned_at", UtcDateTime, nullable=False),
)

contracts = sa.Table(
    "ent_contracts",
    metadata,
    sa.Column("id", key_string(64), primary_key=True),
    *_owner(),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("body", long_text(), nullable=False),
    sa.Column("plan_key", key_string(KEY), nullable=True),
    sa.Column("term", sa.String(200), nullable=True),
    sa.Column("amount", sa.Numeric(18, 6), nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("plan_version", sa.Integer, nullable=True),
    sa.Column("seats", sa.Integer, nullable=True),
    sa.Column("cycle_unit", sa.String(8), nullable=True),
    sa.Column("cycle_every", sa.Integer, nullable=True),
    sa.Column("sequential", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("terms_hash", sa.String(64), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    # when the sweep has something to do for it next (a notice); NULL: nothing until written
    sa.Column("next_due_at", UtcDateTime, nullable=True),
    # the owner's contracts in the order their list pages through them
    sa.Index("ix_ent_contracts_owner", *_OWNER, "created_at", "id"),
    sa.Index("ix_ent_contracts_expiry", "tenant", "status", "expires_at"),
    sa.Index("ix_ent_contracts_due", "tenant", "next_due_at", "id"),
)

contract_signers = sa.Table(
    "ent_contract_signers",
    metadata,
    sa.Column("contract_id", key_string(64), sa.ForeignKey("ent_contracts.id"), primary_key=True),
    sa.Column("id", key_string(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("email", sa.String(64), nullable=False),
    sa.Column("role", sa.String(100), nullable=False),
    sa.Column("signing_order", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("token_hash", key_string(64), nullable=True, unique=True),
    sa.Column("token_expires_at", UtcDateTime, nullable=True),
)

contract_events = sa.Table(
    "ent_contract_events",
    metadata,
    sa.Column("contract_id", key_string(64), sa.ForeignKey("ent_contracts.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("signer_id", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(64), nullable=True),
    sa.Column("data", JSONDocument, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

personal_data = sa.Table(
    "ent_personal_data",
    metadata,
    sa.Column("commitment", key_string(64), primary_key=True),
    sa.Column("tenant", key_string(TENANT), nullable=False),
    sa.Column("value", sa.Text, nullable=True),
    sa.Column("salt", sa.String(64), nullable=True),
)

contract_attachments = sa.Table(
    "ent_contract_attachments",
    metadata,
    sa.Column("contract_id", key_string(64), sa.ForeignKey("ent_contracts.id"), primary_key=True),
    sa.Column("digest", key_string(64), primary_key=True),
    sa.Column("content_type", sa.String(64), nullable=False),
    sa.Column(
        "data",
        long_binary(),
        nullable=False,
    ),
)

provider_events = sa.Table(
    "ent_provider_events",
    metadata,
    sa.Column("tenant", key_string(TENANT), primary_key=True),
    sa.Column("event_id", key_string(255), primary_key=True),
    sa.Column("seen_at", UtcDateTime, nullable=False),
)

provider_links = sa.Table(
    "ent_provider_links",
    metadata,
    sa.Column("tenant", key_string(TENANT), primary_key=True),
    sa.Column("external_id", key_string(255), primary_key=True),
    sa.Column("owner_kind", key_string(OWNER_KIND), nullable=False),
    sa.Column("owner_id", key_string(OWNER_ID), nullable=False),
    sa.Column("last_applied_at", UtcDateTime, nullable=True),
    sa.Column("checkout_id", key_string(255), nullable=True),
    sa.Column("plan_key", key_string(KEY), nullable=True),
    sa.Column("manager", sa.String(255), nullable=True),
    sa.Column("subscription_id", sa.String(64), nullable=True),
    sa.Index("ix_ent_provider_links_checkout", "tenant", "checkout_id"),
)

provider_commands = sa.Table(
    "ent_provider_commands",
    metadata,
    # the outbox: what we asked the payment provider to do, recorded in the transaction
    # that decided it and sent after commit (and retried by the sweep) under its
    # idempotency key
    sa.Column("tenant", key_string(TENANT), primary_key=True),
    sa.Column("id", key_string(64), primary_key=True),
    sa.Column("owner_kind", key_string(OWNER_KIND), nullable=False),
    sa.Column("owner_id", key_string(OWNER_ID), nullable=False),
    sa.Column("subscription_id", sa.String(64), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payload", JSONDocument, nullable=False),
    sa.Column("idempotency_key", key_string(IDEMPOTENCY_KEY), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("result", JSONDocument, nullable=True),
    sa.UniqueConstraint("tenant", "idempotency_key", name="uq_ent_provider_commands_key"),
    sa.Index("ix_ent_provider_commands_due", "tenant", "status", "next_attempt_at"),
    sa.Index("ix_ent_provider_commands_owner", *_OWNER),
)

requests = sa.Table(
    "ent_requests",
    metadata,
    # mutations remembered by their idempotency key: what was asked (a digest) and the
    # ids a repeat answers from; forgotten with the usage keys
    *_owner(primary_key=True),
    sa.Column("key", key_string(IDEMPOTENCY_KEY), primary_key=True),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("outcome", JSONDocument, nullable=False),
    sa.Index("ix_ent_requests_at", "tenant", "at"),
)

notifications = sa.Table(
    "ent_notifications",
    metadata,
    # the notification outbox: written in the transaction that caused each one, one row
    # per fact (the owner's key), claimed by deliverers with a lease, kept a while after
    # delivery; ``pk`` orders each owner's notifications
    sa.Column("pk", row_id(), primary_key=True, autoincrement=True),
    sa.Column("id", key_string(64), nullable=False),
    *_owner(),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("key", key_string(NOTIFICATION_KEY), nullable=False),
    sa.Column("facts", JSONDocument, nullable=False),
    sa.Column("about", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", UtcDateTime, nullable=True),
    sa.Column("delivered_at", UtcDateTime, nullable=True),
    sa.Column("failed_at", UtcDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.UniqueConstraint("tenant", "id", name="uq_ent_notifications_id"),
    sa.UniqueConstraint(*_OWNER, "key", name="uq_ent_notifications_key"),
    sa.Index("ix_ent_notifications_pending", "tenant", "delivered_at", "failed_at", "pk"),
    sa.Index("ix_ent_notifications_owner", *_OWNER, "pk"),
)

owner_revisions = sa.Table(
    "ent_owner_revisions",
    metadata,
    *_owner(primary_key=True),
    # bumped, under the row's lock, by every write that changes what the owner is entitled
    # to; consumptions lock it for share when they must read terms at the database
    sa.Column("revision", sa.BigInteger, nullable=False),
)

tenant_locks = sa.Table(
    "ent_tenant_locks",
    metadata,
    sa.Column("tenant", key_string(TENANT), primary_key=True),
    # one row per tenant-wide rule (the one-free-plan rule): writes that the rule checks
    # lock it, so two of them cannot both find the rule satisfied
    sa.Column("rule", key_string(64), primary_key=True),
)

changes = sa.Table(
    "ent_changes",
    metadata,
    # the change feed: one row per owner (or, owner NULL, per catalog change) a committed
    # transaction touched; every process follows it to drop what it cached
    sa.Column("seq", row_id(), primary_key=True, autoincrement=True),
    *_owner(nullable=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Index("ix_ent_changes_at", "at"),
)
# on PostgreSQL a trigger function (migration 0005) wakes followers on insert: dropping the
# table (a host's metadata.drop_all()) drops the trigger, and this drops its function
sa.event.listen(
    changes,
    "after_drop",
    sa.DDL("DROP FUNCTION IF EXISTS ent_changes_notify()").execute_if(  # type: ignore[no-untyped-call]
        dialect="postgresql"
    ),
)

feed_state = sa.Table(
    "ent_feed_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    # the highest seq the sweep pruned: a follower behind it resynchronises in full
    sa.Column("pruned_through", sa.BigInteger, nullable=False),
)

signing_failures = sa.Table(
    "ent_signing_failures",
    metadata,
    # signing links that opened nothing, by a hash of the client address: the signing
    # page's bad-token limit, counted here so that every process of a host shares it
    sa.Column("pk", row_id(), primary_key=True, autoincrement=True),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_ent_signing_failures_client", "client", "at_ms"),
    sa.Index("ix_ent_signing_failures_at", "at_ms"),
)


migrations = sa.Table(
    "ent_migrations",
    metadata,
    # plan-version migrations: a job moving a plan's subscribers to one of its versions
    sa.Column("tenant", key_string(TENANT), primary_key=True),
    sa.Column("id", key_string(64), primary_key=True),
    sa.Column("plan_key", key_string(KEY), nullable=False),
    sa.Column("to_version", sa.Integer, nullable=False),
    sa.Column("from_versions", JSONDocument, nullable=True),
    sa.Column("move", sa.String(16), nullable=False),
    sa.Column("move_at", UtcDateTime, nullable=True),
    sa.Column("price_lock_until", UtcDateTime, nullable=True),
    sa.Column("if_over_quota", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_ent_migrations_recent", "tenant", "created_at"),
)

migration_items = sa.Table(
    "ent_migration_items",
    metadata,
    # one row per subscription a migration moves; runs claim pending rows with
    # FOR UPDATE SKIP LOCKED, so two workers never handle one
    sa.Column("tenant", key_string(TENANT), primary_key=True),
    sa.Column("migration_id", key_string(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("subscription_id", key_string(64), nullable=False),
    sa.Column("owner_kind", key_string(OWNER_KIND), nullable=False),
    sa.Column("owner_id", key_string(OWNER_ID), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("why", sa.String(32), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("done_at", UtcDateTime, nullable=True),
    sa.Column("moved_from", sa.Integer, nullable=True),
    sa.Index("ix_ent_migration_items_status", "tenant", "migration_id", "status", "seq"),
    sa.Index("ix_ent_migration_items_subscription", "tenant", "subscription_id"),
)

# Invoices (0016): finalized once, never edited; only their payment state changes. One
# invoice per owner and period (the unique index refuses a second, whoever finalizes);
# credit notes have no period.
invoices = sa.Table(
    "ent_invoices",
    metadata,
    sa.Column("pk", row_id(), primary_key=True, autoincrement=True),
    sa.Column("id", key_string(64), nullable=False, unique=True),
    *_owner(),
    sa.Column("number", key_string(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subscription_id", key_string(64), nullable=False),
    sa.Column("period_start", UtcDateTime, nullable=True),
    sa.Column("period_end", UtcDateTime, nullable=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("total", sa.Numeric(24, 6), nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("credits", key_string(64), nullable=True),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("paid_at", UtcDateTime, nullable=True),
    sa.Column("payment_reference", sa.String(255), nullable=True),
    sa.Column("voided_at", UtcDateTime, nullable=True),
    sa.Column("void_reason", sa.Text, nullable=True),
    sa.UniqueConstraint("tenant", "number", name="uq_ent_invoices_number"),
    sa.UniqueConstraint(*_OWNER, "period_start", name="uq_ent_invoices_period"),
    sa.Index("ix_ent_invoices_owner", *_OWNER, "pk"),
    sa.Index("ix_ent_invoices_open_due", "tenant", "status", "due_at"),
)

invoice_lines = sa.Table(
    "ent_invoice_lines",
    metadata,
    sa.Column("invoice_id", key_string(64), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_amount", sa.Numeric(24, 6), nullable=False),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime, nullable=False),
    # the amount before rounding, as an exact fraction "numerator/denominator"
    sa.Column("exact", sa.Text, nullable=False),
    sa.Column("amount", sa.Numeric(24, 6), nullable=False),
)

# The gapless sequence of invoice numbers: one row per tenant and prefix, incremented
# under its row lock by the unit of work that inserts the invoice (a rollback gives the
# number back).
invoice_counters = sa.Table(
    "ent_invoice_counters",
    metadata,
    sa.Column("tenant", key_string(TENANT), primary_key=True),
    sa.Column("prefix", key_string(32), primary_key=True),
    sa.Column("last", sa.BigInteger, nullable=False),
)
