"""Plan-version migrations: moving many subscribers of a plan to a newer version of it, as
a job that is data (a draft, its items, their outcomes) rather than a loop in a script.

A subscription keeps the version it bought (grandfathering); nothing here ever runs by
itself — revising a plan makes a version and moves nobody. A `Migration` names the plan,
the version to move to, when each item moves and until when the old price holds; its
`MigrationItem` rows, one per subscription chosen when it was created, each end in one
final state (`ItemStatus`). The rules a run and a preview share live here: why an item is
skipped (`skip_reason`), whether a move changes nothing (`changes_nothing`), which
price version an invoice charges while a price lock holds (`price_version_at`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from entitlements.domain.instant import (
    as_optional_utc,
    as_utc,
    aware,
    optional_aware,
    optional_instant,
)
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.domain.plan_change import PlanChangePreview
from entitlements.domain.scheduled import PendingChange, PendingKind
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.domain.usage import OverQuotaPolicy

__all__ = [
    "ItemOutcome",
    "ItemPreview",
    "ItemStatus",
    "Migration",
    "MigrationItem",
    "MigrationPreview",
    "MigrationProgress",
    "MigrationStatus",
    "MoveAt",
    "PriceLock",
    "SkipReason",
    "changes_nothing",
    "is_move_of",
    "migration_status_after",
    "move_instant",
    "move_reason",
    "price_version_at",
    "skip_reason",
]


class MigrationStatus(enum.StrEnum):
    """Where a migration stands: a ``draft`` moves nothing; ``running`` once a run began;
    ``completed`` when no item is pending; ``canceled`` by staff (final)."""

    DRAFT = "draft"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELED = "canceled"


class ItemStatus(enum.StrEnum):
    """One subscription's fate in a migration. Every status but ``pending`` is final."""

    PENDING = "pending"
    MOVED = "moved"
    SCHEDULED = "scheduled"
    """Its move is a scheduled change of the subscription, in force from its instant on
    (`MigrationItem.done_at`)."""
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELED = "canceled"
    """The migration was canceled before the item's turn."""


class SkipReason(enum.StrEnum):
    """Why an item was left where it was."""

    NO_DIFF = "no_diff"
    """The target version has the same terms (limits, features, price, trial) as the held
    one: moving would change nothing."""
    OVER_QUOTA = "over_quota"
    """Current usage would pass a lowered limit and the migration refuses that."""
    ENDED = "ended"
    """The subscription was canceled, expired or failed (or the owner has none)."""
    PENDING_CHANGE = "pending_change"
    """A pending change in the way: a change scheduled for later (by the customer, staff
    or another migration), a cancellation at period end, a pause (in force or to come), a
    checkout awaiting payment, or a command to the payment provider not yet done."""
    NO_PERIOD = "no_period"
    """A ``period_end`` migration, and the subscription has no billing period whose end
    it could move at (move it with a migration ``at="now"`` or at a date)."""
    PLAN_CHANGED = "plan_changed"
    """Staff moved the owner to another plan, or to a version the migration does not move
    from, since the migration was created."""
    ALREADY_ON_TARGET = "already_on_target"
    """The owner is on the target version already."""


class MoveAt(enum.StrEnum):
    """When each item moves: ``now`` (as the run reaches it), at the end of each
    subscriber's own current period, or at one instant (`Migration.move_at`)."""

    NOW = "now"
    PERIOD_END = "period_end"
    INSTANT = "instant"


@attrs.frozen
class Migration:
    """The job as recorded: what moves where, when, and who asked."""

    id: str
    """Its id (random hex), what `run`, `cancel` and `get` take."""
    tenant: str | None
    """The tenant whose subscriptions it moves."""
    plan_key: str
    """The plan whose subscribers move."""
    to_version: int
    """The version they move to."""
    from_versions: tuple[int, ...] | None
    """The versions moved from (``None``: every older one)."""
    move: MoveAt
    """When each item moves."""
    move_at: datetime | None = attrs.field(converter=as_optional_utc, validator=optional_aware)
    """The instant, when `move` is `MoveAt.INSTANT`."""
    price_lock_until: datetime | None = attrs.field(
        converter=as_optional_utc, validator=optional_aware
    )
    """Until then, moved subscriptions are charged the price of the version they left."""
    if_over_quota: OverQuotaPolicy
    """Refuse (skip the item) or apply a move that puts usage over a lowered limit."""
    status: MigrationStatus
    """Draft, running, completed or canceled."""
    actor: str
    """Who created it."""
    reason: str | None
    """Why, in the creator's words; repeated in every move's audit reason."""
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was created."""
    updated_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When its status last changed."""

    @property
    def target(self) -> str:
        """What the audit trail names."""
        return f"migration:{self.id}"

    @property
    def is_over(self) -> bool:
        """Whether nothing more happens to it (completed or canceled)."""
        return self.status in (MigrationStatus.COMPLETED, MigrationStatus.CANCELED)


@attrs.frozen
class MigrationItem:
    """One subscription of a migration and its outcome."""

    migration_id: str
    """The migration it belongs to."""
    seq: int
    """Its place in the run's order (1, 2...)."""
    subscription_id: str
    """The subscription chosen at creation."""
    owner: Owner
    """The subscription's owner: the run takes this owner's terms lock."""
    from_version: int
    """The version it held when the migration was created."""
    status: ItemStatus = ItemStatus.PENDING
    """Pending until a run (or a cancel) gives it its final state."""
    why: SkipReason | None = None
    """Why it was skipped."""
    error: str | None = None
    """What failed (error class and message)."""
    done_at: datetime | None = optional_instant()
    """When it reached its final state; for a ``scheduled`` item (and a scheduled one
    found applied when its migration was canceled), when its move takes effect."""
    moved_from: int | None = None
    """The version it actually left (staff may have changed it since creation)."""


@attrs.frozen
class ItemOutcome:
    """What handling an item decided: its final status and why."""

    status: ItemStatus
    """The final status."""
    why: SkipReason | None = None
    """Why it was skipped."""
    error: str | None = None
    """What failed."""
    moved_from: int | None = None
    """The version a move left."""
    takes_effect: datetime | None = optional_instant()
    """When a scheduled move takes effect (``None``: when the item is settled)."""

    @classmethod
    def skipped(cls, why: SkipReason) -> ItemOutcome:
        """An item left where it was, and why."""
        return cls(ItemStatus.SKIPPED, why)

    def settle(self, item: MigrationItem, at: datetime) -> MigrationItem:
        """The item in its final state, reached at ``at``."""
        return attrs.evolve(
            item,
            status=self.status,
            why=self.why,
            error=self.error,
            done_at=self.takes_effect or at,
            moved_from=self.moved_from,
        )


@attrs.frozen
class ItemPreview:
    """What a run would do to one item now, computed without writing anything."""

    item: MigrationItem
    """The item as stored."""
    current_version: int | None
    """The version the subscription holds now (``None``: it has none live)."""
    outcome: ItemOutcome
    """``moved`` (or ``scheduled``) when it would move, else the skip."""
    change: PlanChangePreview | None
    """The entitlement diff and what would be over quota (``None`` when skipped before
    that was worth computing)."""

    @property
    def no_diff(self) -> bool:
        """Whether the move would change nothing."""
        return self.outcome.why is SkipReason.NO_DIFF


def _outcome_key(outcome: ItemOutcome) -> str:
    return outcome.status.value if outcome.why is None else f"skipped:{outcome.why.value}"


@attrs.frozen
class MigrationPreview:
    """A dry run of a migration: per item, its version, diff and expected outcome."""

    migration: Migration
    """The migration previewed."""
    items: tuple[ItemPreview, ...]
    """Every item, in order."""
    at: datetime
    """The instant the preview answers for."""

    @property
    def totals(self) -> Mapping[str, int]:
        """How many items end each way: ``moved``, ``skipped:<why>``, ``failed``, and
        items already final, by their status."""
        counts: dict[str, int] = {}
        for preview in self.items:
            key = _outcome_key(preview.outcome)
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))


@attrs.frozen
class MigrationProgress:
    """A migration with how many of its items are in each state."""

    migration: Migration
    """The migration as stored."""
    counts: Mapping[str, int]
    """Items per `ItemStatus` value (every status present, zero or more)."""
    handled: int = 0
    """Items the call that returned this brought to a final state."""

    @property
    def total(self) -> int:
        """How many items the migration has."""
        return sum(self.counts.values())

    @property
    def pending(self) -> int:
        """How many items are still to handle."""
        return self.counts.get(ItemStatus.PENDING.value, 0)

    @property
    def done(self) -> bool:
        """Whether no item is left to handle."""
        return self.pending == 0


def all_counts(found: Mapping[str, int]) -> dict[str, int]:
    """Counts for every `ItemStatus`, zero where none."""
    return {status.value: int(found.get(status.value, 0)) for status in ItemStatus}


def migration_status_after(migration: Migration, pending: int) -> MigrationStatus:
    """A running (or draft) migration with nothing pending is completed; otherwise its
    status stays."""
    if migration.is_over or pending:
        return migration.status
    return MigrationStatus.COMPLETED


def changes_nothing(held: Plan, target: Plan) -> bool:
    """The "no diff" rule: a move between versions with the same terms changes nothing
    (not what the owner may do, not what it pays), so it is skipped rather than audited
    as a change. Per-owner overrides do not count: they are the owner's, not the plan's,
    and a later expiry would reveal the version underneath."""
    return held.same_terms(target)


_ENDED = (SubscriptionStatus.CANCELED, SubscriptionStatus.EXPIRED, SubscriptionStatus.FAILED)


def skip_reason(
    migration: Migration,
    current: Subscription | None,
    *,
    change_in_flight: bool,
) -> SkipReason | None:
    """Why the item whose subscription stands as ``current`` now (read under the owner's
    lock, or as time made it for a preview) is not moved — or ``None``: it moves.
    A subscription staff changed since the migration was created is judged as it stands:
    moved from its new state if that is still a version the migration moves from, skipped
    with the reason otherwise."""
    if current is None or current.status in _ENDED:
        return SkipReason.ENDED
    if current.plan_key != migration.plan_key:
        return SkipReason.PLAN_CHANGED
    if current.plan_version == migration.to_version:
        return SkipReason.ALREADY_ON_TARGET
    versions = migration.from_versions
    if versions is not None and current.plan_version not in versions:
        return SkipReason.PLAN_CHANGED
    if (
        change_in_flight
        or current.status is SubscriptionStatus.PENDING
        or current.pending_change is not None
        or current.pause is not None
    ):
        return SkipReason.PENDING_CHANGE
    if migration.move is MoveAt.PERIOD_END and current.current_period is None:
        return SkipReason.NO_PERIOD
    return None


def move_instant(migration: Migration, current: Subscription) -> datetime | None:
    """When ``current``'s move takes effect: at the end of its own current period
    (``period_end``), at the migration's instant, or ``None`` — as the run reaches it."""
    if migration.move is MoveAt.PERIOD_END:
        assert current.current_period is not None  # skip_reason skips those without one
        return current.current_period.end
    return migration.move_at


def is_move_of(migration: Migration, request: PendingChange | None) -> bool:
    """Whether ``request`` (a subscription's pending change) is still the move
    ``migration`` scheduled: a plan change to its plan and version whose reason names it.
    Anything else (the customer replaced it, staff scheduled another) is not the
    migration's to take back."""
    return (
        request is not None
        and request.kind is PendingKind.CHANGE
        and (request.plan_key, request.plan_version) == (migration.plan_key, migration.to_version)
        and request.seats is None
        and request.addons is None
        and move_reason(migration) == request.reason
    )


def move_reason(migration: Migration) -> str:
    """The reason every move (or scheduled move) of the migration is audited with: its id,
    then the creator's reason."""
    reason = f"migration {migration.id}"
    return f"{reason}: {migration.reason}" if migration.reason else reason


@attrs.frozen
class PriceLock:
    """A moved subscription still charged the price of the version it left, until
    ``until``."""

    subscription_id: str
    """The moved subscription."""
    plan_key: str
    """Its plan."""
    from_version: int
    """The version whose price holds."""
    to_version: int
    """The version the subscription was moved to."""
    moved_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was moved: the lock holds from then."""
    until: datetime = attrs.field(converter=as_utc, validator=aware)
    """When the new version's price takes over."""
    migration_id: str
    """The migration that moved it."""


def price_version_at(subscription: Subscription, at: datetime, locks: Sequence[PriceLock]) -> int:
    """The plan version whose price is in force for ``subscription`` (as it stood at
    ``at``) at ``at``: the version it left, while a price lock of the migration that
    moved it holds — from the move until ``until`` — and it still holds the version it
    was moved to; its own version otherwise. Invoices charge this version's price."""
    for lock in locks:
        if (
            lock.subscription_id == subscription.id
            and lock.plan_key == subscription.plan_key
            and lock.to_version == subscription.plan_version
            and lock.moved_at <= at < lock.until
        ):
            return lock.from_version
    return subscription.plan_version
