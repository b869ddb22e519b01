"""``ents.migrations``: moving a plan's subscribers to one of its versions as a job.

`create` records a draft and its items (one per subscription chosen); nothing moves
until `run`. `preview` is a dry run on a read-only unit of work. `run` handles the next
``batch`` items, in groups of `GROUP`, one short unit of work per group: claim the
group's pending items (workers skip items another holds: two workers never handle one),
then per item, owners in a stable order and each under a savepoint, take the owner's terms
lock and read the subscription as it stands (so a concurrent consumption or staff change
is built upon, never overwritten), decide with the domain's rules
(`entitlements.domain.migration`), move it with the lifecycle kernel's plan change (which
audits it, with the migration's id in the reason) and store the item's outcome with it.
A run that dies leaves its group pending (its unit of work rolled back): calling `run`
again, in any process, carries on.

Moves at a later instant (``at="period_end"`` or a datetime) are scheduled changes of each
subscription (`schedule_move`): the run records them, every answer follows them from their
instant on, the sweep stores them; `cancel` takes back those still to come
(`unschedule_move`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs

from entitlements.domain import lifecycle as kernel
from entitlements.domain.access import AccessPolicy
from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.assignment import check_may_assign
from entitlements.domain.checks import (
    check_count,
    check_id,
    check_key,
    check_reason,
    check_version,
    parse_enum,
)
from entitlements.domain.due import as_of
from entitlements.domain.instant import given_utc, optional_given_utc
from entitlements.domain.migration import (
    ItemOutcome,
    ItemPreview,
    ItemStatus,
    Migration,
    MigrationItem,
    MigrationPreview,
    MigrationProgress,
    MigrationStatus,
    MoveAt,
    SkipReason,
    all_counts,
    changes_nothing,
    is_move_of,
    migration_status_after,
    move_instant,
    move_reason,
    price_version_at,
    skip_reason,
)
from entitlements.domain.owner import Owner, as_owner, owner_key
from entitlements.domain.plan import Plan
from entitlements.domain.plan_change import preview
from entitlements.domain.scheduled import PendingChange, PendingKind
from entitlements.domain.subscription import Subscription, with_changes
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import (
    Busy,
    EntitlementsError,
    InvalidInput,
    OverQuotaRefused,
    StaleWrite,
    StorageError,
    SubscriptionNotFound,
    UnknownPlan,
)
from entitlements.ports import UnitOfWork
from entitlements.service import lifecycle
from entitlements.service.assignment import PlanAssignment
from entitlements.service.due import read_current
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.snapshots import current_usage, resolve_with

__all__ = ["MIGRATOR", "Migrations", "change_in_flight", "schedule_move", "unschedule_move"]

_PAGE = 1000
GROUP = 20
"""Items handled per unit of work by `Migrations.run`: enough to pay one commit per
group, few enough that a consume of a moving owner waits one short transaction."""


class _Undo(Exception):
    """Rolls an item's savepoint back when it failed (its error is kept, its writes not)."""


MAX_BATCH = 100_000

MIGRATOR = Actor.system("migrations")
"""Who moves the items of a run given no ``actor`` (a worker acting on the migration
staff created; every move's reason names the migration)."""


def _move_at(at: object) -> tuple[MoveAt, datetime | None]:
    """``"now"``, ``"period_end"`` or an aware datetime, as stored."""
    if isinstance(at, datetime):
        return MoveAt.INSTANT, given_utc(at, "at")
    if at == MoveAt.NOW.value or at == MoveAt.PERIOD_END.value:
        return MoveAt(str(at)), None
    raise InvalidInput("at", 'must be "now", "period_end" or an aware datetime', at)


def _versions(value: Iterable[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput("from_versions", "must be a list of version numbers", value)
    found = []
    for version in value:
        checked = check_version(version, "from_versions")
        if checked is None:
            raise InvalidInput("from_versions", "must be a list of version numbers", value)
        found.append(checked)
    if not found:
        raise InvalidInput("from_versions", "name at least one version (None: every older one)")
    return tuple(sorted(set(found)))


def _owners(value: Iterable[Owner] | None) -> tuple[Owner, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput("owners", "must be a list of owners", value)
    found = tuple(dict.fromkeys(as_owner(o) for o in value))
    if not found:
        raise InvalidInput("owners", "name at least one owner (None: every subscriber)")
    return found


def _failure(error: EntitlementsError) -> ItemOutcome:
    return ItemOutcome(ItemStatus.FAILED, error=f"{type(error).__name__}: {error}"[:2000])


# -- the seams: what counts as a change in flight, and moving at a later instant -------------


def change_in_flight(uow: UnitOfWork, owner: Owner) -> bool:
    """Whether a change of the owner's is on its way outside its subscription row, which a
    migration must not overtake: a command to the payment provider not yet done. (Those
    the subscription holds — a scheduled change, a cancellation at period end, a pause —
    `skip_reason` reads from it.)"""
    return bool(uow.provider.open_commands(owner))


def schedule_move(
    tx: Transaction,
    migration: Migration,
    current: Subscription,
    who: Actor,
    rules: PlanAssignment,
    policy: AccessPolicy,
    writer: lifecycle.Writer = lifecycle.store,
) -> ItemOutcome:
    """Schedule ``current``'s move to the migration's version — at the end of its own
    current period (``MoveAt.PERIOD_END``) or at ``migration.move_at`` — as a pending change
    of the subscription (the kernel's `schedule` step, audited with the migration's id in
    the reason); the item ends ``scheduled``, dated at the move's instant. A move whose
    instant has passed by the time the run reaches it is made now (by the caller, which
    calls this only for instants to come). The target is checked for assignment, and
    usage against lowered limits under the migration's ``if_over_quota``, both now (as a
    move now would be: an owner over quota already is skipped, like in the preview) and
    again when the change applies."""
    at = move_instant(migration, current)
    assert at is not None
    held, target = tx.uow.plans.get_many(
        [(migration.plan_key, current.plan_version), (migration.plan_key, migration.to_version)]
    )
    if changes_nothing(held, target):
        return ItemOutcome.skipped(SkipReason.NO_DIFF)
    rules.check(tx, current.owner, target, current, who)
    if migration.if_over_quota is OverQuotaPolicy.REFUSE:
        before = resolve_with(tx.uow, current.owner, current, tx.now, policy)
        moved = with_changes(current, plan_version=target.version)
        after = resolve_with(tx.uow, current.owner, moved, tx.now, policy)
        if preview(before, after, current_usage(tx.uow, before), tx.now).over_quota:
            return ItemOutcome.skipped(SkipReason.OVER_QUOTA)
    wanted = PendingChange(
        PendingKind.CHANGE,
        at,
        tx.now,
        who.id,
        move_reason(migration),
        current.revision,
        plan_key=target.key,
        plan_version=target.version,
        cycle=target.price.cycle if target.price is not None else None,
        if_over_quota=migration.if_over_quota.value,
    )
    writer(tx, kernel.schedule(current, wanted, tx.now, actor=who))
    return ItemOutcome(ItemStatus.SCHEDULED, moved_from=current.plan_version, takes_effect=at)


def unschedule_move(
    tx: Transaction, migration: Migration, item: MigrationItem, who: Actor, reason: str
) -> MigrationItem:
    """Take back the move `schedule_move` made for ``item`` (its migration is canceled),
    under the owner's terms lock: ``canceled`` when the subscription's pending change is
    still that move (the kernel's `cancel_pending`, audited); ``moved`` when the move has
    applied (the subscription holds the target version and no longer that pending change);
    otherwise (the customer or staff replaced or dropped it, it failed at its instant, the
    subscription ended) the item stays ``scheduled`` with why in its ``error``."""
    try:
        current = lifecycle.load(tx, item.owner)
    except SubscriptionNotFound:
        return attrs.evolve(item, error="left at cancel: the owner has no subscription")
    if is_move_of(migration, current.scheduled):
        lifecycle.store(tx, kernel.cancel_pending(current, tx.now, actor=who, reason=reason))
        return attrs.evolve(item, status=ItemStatus.CANCELED, done_at=tx.now)
    held = (current.plan_key, current.plan_version)
    if held == (migration.plan_key, migration.to_version) and not current.is_terminal:
        return attrs.evolve(item, status=ItemStatus.MOVED)
    other = current.pending_change
    why = "its pending change is " + (other.describe() if other else "gone")
    return attrs.evolve(item, error=f"left at cancel: {why}, not this migration's move"[:2000])


# -- the use cases --------------------------------------------------------------------------


class Migrations:
    """``ents.migrations``: plan-version migrations as previewed, resumable, audited jobs."""

    def __init__(self, runtime: Runtime, assignment: PlanAssignment) -> None:
        self._rt = runtime
        self._assignment = assignment

    # -- creating --------------------------------------------------------------------

    def create(
        self,
        plan_key: str,
        *,
        actor: Actor | str,
        to_version: int | None = None,
        from_versions: Iterable[int] | None = None,
        owners: Iterable[Owner] | None = None,
        at: str | datetime = "now",
        price_lock_until: datetime | None = None,
        if_over_quota: OverQuotaPolicy | str = OverQuotaPolicy.REFUSE,
        reason: str | None = None,
        tenant: str | None = None,
        now: datetime | None = None,
    ) -> Migration:
        """Record a draft migration of ``plan_key``'s subscribers in ``tenant`` to
        ``to_version`` (default: the latest): those on the versions ``from_versions``
        (default: every older one), or only the ``owners`` given. Nothing moves until
        `run`. ``price_lock_until``: moved subscriptions are charged the old version's
        price until then. ``if_over_quota``: skip (``refuse``) or move (``allow``) an
        owner whose usage would pass a lowered limit."""
        who, reason = as_actor(actor), check_reason(reason)
        plan_key = check_key(plan_key, "plan_key")
        check_version(to_version, "to_version")
        versions, chosen = _versions(from_versions), _owners(owners)
        move, move_at = _move_at(at)
        lock = optional_given_utc(price_lock_until, "price_lock_until")
        policy = parse_enum(OverQuotaPolicy, if_over_quota, "if_over_quota")
        with self._rt.transaction(tenant, now) as tx:
            tx.authorize(who, "migration.create", subject=plan_key)
            if move_at is not None and move_at <= tx.now:
                raise InvalidInput("at", 'must be in the future (now: at="now")', at)
            target, moving = _target(tx.uow, plan_key, to_version, versions)
            migration = Migration(
                id=self._rt.new_id(),
                tenant=tenant,
                plan_key=plan_key,
                to_version=target.version,
                from_versions=versions,
                move=move,
                move_at=move_at,
                price_lock_until=lock,
                if_over_quota=policy,
                status=MigrationStatus.DRAFT,
                actor=str(who),
                reason=reason,
                created_at=tx.now,
                updated_at=tx.now,
            )
            subscriptions = _chosen(tx.uow, plan_key, moving, chosen)
            items = [
                MigrationItem(migration.id, n, s.id, s.owner, s.plan_version)
                for n, s in enumerate(subscriptions, start=1)
            ]
            tx.uow.migrations.add(migration, items)
            tx.record(
                who,
                "migration.create",
                migration.target,
                after={**_summary(migration), "items": len(items)},
                reason=reason,
            )
            return migration

    # -- reading ---------------------------------------------------------------------

    def get(self, migration_id: str, *, tenant: str | None = None) -> MigrationProgress:
        """The migration with how many items are in each state."""
        migration_id = check_id(migration_id, "migration_id", max_length=64)
        with self._rt.read(tenant) as uow:
            return _progress(uow, uow.migrations.get(migration_id))

    def list(self, *, tenant: str | None = None, limit: int = 100) -> Sequence[MigrationProgress]:
        """The tenant's migrations, newest first, each with its counts."""
        limit = check_count(limit, "limit", maximum=1000, minimum=1)
        with self._rt.read(tenant) as uow:
            return [_progress(uow, m) for m in uow.migrations.list(limit)]

    def items(
        self,
        migration_id: str,
        *,
        status: ItemStatus | str | None = None,
        after: int = 0,
        limit: int = 100,
        tenant: str | None = None,
    ) -> Sequence[MigrationItem]:
        """The items after position ``after``, in order; with ``status``, only those."""
        migration_id = check_id(migration_id, "migration_id", max_length=64)
        wanted = None if status is None else parse_enum(ItemStatus, status, "status").value
        after = check_count(after, "after")
        limit = check_count(limit, "limit", maximum=10_000, minimum=1)
        with self._rt.read(tenant) as uow:
            uow.migrations.get(migration_id)
            return uow.migrations.items(migration_id, after=after, limit=limit, status=wanted)

    def preview(
        self, migration_id: str, *, tenant: str | None = None, now: datetime | None = None
    ) -> MigrationPreview:
        """A dry run: per item, the version held now, the entitlement diff, what would be
        over quota, and the outcome a run would reach now (moved, or skipped and why;
        ``failed`` when the target cannot be assigned). Items already final are listed
        as they ended. Writes nothing."""
        migration_id = check_id(migration_id, "migration_id", max_length=64)
        at = self._rt.now(now) if now is not None else self._rt.read_now(tenant)
        with self._rt.read(tenant) as uow:
            migration = uow.migrations.get(migration_id)
            target = uow.plans.get(migration.plan_key, migration.to_version)
            plans: dict[int, Plan] = {target.version: target}
            found: list[ItemPreview] = []
            after = 0
            while True:
                page = uow.migrations.items(migration_id, after=after, limit=_PAGE)
                if not page:
                    break
                found.extend(self._preview_item(uow, migration, item, plans, at) for item in page)
                after = page[-1].seq
        return MigrationPreview(migration, tuple(found), at)

    def _preview_item(
        self,
        uow: UnitOfWork,
        migration: Migration,
        item: MigrationItem,
        plans: dict[int, Plan],
        at: datetime,
    ) -> ItemPreview:
        if item.status is not ItemStatus.PENDING:
            ended = ItemOutcome(item.status, item.why, item.error, item.moved_from)
            return ItemPreview(item, None, ended, None)
        current = read_current(uow, item.owner, at, self._rt.policy)
        version = None if current is None or current.is_terminal else current.plan_version
        why = skip_reason(migration, current, change_in_flight=change_in_flight(uow, item.owner))
        if why is not None or current is None:
            return ItemPreview(item, version, ItemOutcome.skipped(why or SkipReason.ENDED), None)
        target = plans[migration.to_version]
        if current.plan_version not in plans:
            plans[current.plan_version] = uow.plans.get(migration.plan_key, current.plan_version)
        if changes_nothing(plans[current.plan_version], target):
            return ItemPreview(item, version, ItemOutcome.skipped(SkipReason.NO_DIFF), None)
        try:
            check_may_assign(target, item.owner, current)
        except EntitlementsError as error:
            return ItemPreview(item, version, _failure(error), None)
        proposed = with_changes(current, plan_version=target.version)
        before = resolve_with(uow, item.owner, current, at, self._rt.policy)
        after = resolve_with(uow, item.owner, proposed, at, self._rt.policy)
        change = preview(before, after, current_usage(uow, before), at)
        status = _moving_status(migration, current, at)
        refused = change.over_quota and migration.if_over_quota is OverQuotaPolicy.REFUSE
        outcome = (
            ItemOutcome.skipped(SkipReason.OVER_QUOTA)
            if refused
            else ItemOutcome(status, moved_from=current.plan_version)
        )
        return ItemPreview(item, version, outcome, change)

    # -- running ---------------------------------------------------------------------

    def run(
        self,
        migration_id: str,
        *,
        batch: int = 500,
        actor: Actor | str | None = None,
        tenant: str | None = None,
        now: datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> MigrationProgress:
        """Handle up to ``batch`` pending items, `GROUP` per unit of work, and report
        the counts. Call it again (from any process, after a crash too) until
        ``done``; any number of workers may run one migration at once. Moves are
        audited as ``actor``'s (default: `MIGRATOR`, a system actor), each with the
        migration's id in its reason; the authorizer decides ``migration.run`` first.
        ``progress(handled)`` hears the running count after each item."""
        migration_id = check_id(migration_id, "migration_id", max_length=64)
        batch = check_count(batch, "batch", maximum=MAX_BATCH, minimum=1)
        with self._rt.read(tenant) as uow:
            migration = uow.migrations.get(migration_id)
        who = as_actor(actor) if actor is not None else MIGRATOR
        if migration.is_over:
            return self.get(migration_id, tenant=tenant)
        self._start(migration, who, tenant, now)
        job = _Job(migration, who, tenant, now)
        handled = 0
        while handled < batch:
            settled = self._handle_group(job, min(GROUP, batch - handled))
            if not settled:
                break
            for _ in settled:
                handled += 1
                if progress is not None:
                    progress(handled)
        return attrs.evolve(self._finish(migration, who, tenant, now), handled=handled)

    def _start(
        self, migration: Migration, who: Actor, tenant: str | None, now: datetime | None
    ) -> None:
        with self._rt.transaction(tenant, now) as tx:
            tx.authorize(who, "migration.run", subject=migration.id)
            if migration.status is not MigrationStatus.DRAFT:
                return
            draft = (MigrationStatus.DRAFT,)
            if tx.uow.migrations.set_status(migration.id, draft, MigrationStatus.RUNNING, tx.now):
                tx.record(who, "migration.start", migration.target, after=_summary(migration))

    def _finish(
        self, migration: Migration, who: Actor, tenant: str | None, now: datetime | None
    ) -> MigrationProgress:
        with self._rt.transaction(tenant, now) as tx:
            counts = all_counts(tx.uow.migrations.counts(migration.id))
            stored = tx.uow.migrations.get(migration.id)
            status = migration_status_after(stored, counts[ItemStatus.PENDING.value])
            if status is not stored.status and tx.uow.migrations.set_status(
                migration.id, (stored.status,), status, tx.now
            ):
                stored = attrs.evolve(stored, status=status, updated_at=tx.now)
                tx.record(who, "migration.complete", migration.target, after=counts)
            return MigrationProgress(stored, counts)

    def _handle_group(self, job: _Job, limit: int) -> Sequence[MigrationItem]:
        """Up to ``limit`` items in one unit of work with grouped reads (`_handle_together`);
        when its writes fail (a lost race, a deadlock, the database refusing one item's
        write), the same number of items one unit of work and one savepoint each, so one
        bad item never takes the rest of its group down with it."""
        try:
            return self._handle_together(job, limit)
        except (StaleWrite, Busy, StorageError):
            if self._rt.in_atomic_block:
                raise
        settled: list[MigrationItem] = []
        while len(settled) < limit:
            found = self._handle_claimed(job, 1)
            if not found:
                break
            settled.extend(found)
        return settled

    def _handle_together(self, job: _Job, limit: int) -> Sequence[MigrationItem]:
        """Claim the next ``limit`` pending items and bring each to its final state in one
        unit of work, reading for the whole group at once: the owners' terms locks (taken
        in one stable order, so two workers, or a worker and a multi-owner write, never
        wait on each other in a cycle), their subscriptions with their overrides and the
        plan versions, and their open provider commands, one statement each; the moves
        are written together once all are decided (`lifecycle.Deferred`), and the items'
        outcomes in one statement. No savepoint per item: an item fails only in its
        checks, before anything of it is written (`_decide`); a failed write rolls the
        whole group back, for `_handle_group` to retry item by item."""
        migration, who = job.migration, job.who
        with self._rt.transaction(job.tenant, job.now) as tx:
            claimed = _in_lock_order(tx.uow.migrations.claim(migration.id, limit))
            if not claimed:
                return []
            owners = list(dict.fromkeys(item.owner for item in claimed))
            found = lifecycle.load_many(tx, owners, with_plans=_versions_of(migration, claimed))
            in_flight = tx.uow.provider.owners_with_open_commands(list(found))
            moves = lifecycle.Deferred()
            settled = [
                self._decide(
                    tx, migration, item, who, found.get(item.owner), in_flight, moves
                ).settle(item, tx.now)
                for item in claimed
            ]
            moves.flush(tx)
            tx.uow.migrations.settle_many(settled)
            return settled

    @retries_lost_races
    def _handle_claimed(self, job: _Job, limit: int) -> Sequence[MigrationItem]:
        """Claim the next ``limit`` pending items and bring each to its final state, in
        one unit of work, each item under its own terms lock and savepoint: an item that
        fails leaves nothing behind and the rest goes on; a lost race or a deadlock rolls
        the whole unit of work back and tries again."""
        with self._rt.transaction(job.tenant, job.now) as tx:
            settled: list[MigrationItem] = []
            for item in _in_lock_order(tx.uow.migrations.claim(job.migration.id, limit)):
                outcome = self._handle_alone(tx, job.migration, item, job.who)
                done = outcome.settle(item, tx.now)
                tx.uow.migrations.settle(done)
                settled.append(done)
            return settled

    def _handle_alone(
        self, tx: Transaction, migration: Migration, item: MigrationItem, who: Actor
    ) -> ItemOutcome:
        """One item under its own savepoint: its writes stay only when it ends well."""
        failed: ItemOutcome | None = None
        try:
            with self._rt.transaction(tx.tenant, tx.now):
                outcome = self._handle(tx, migration, item, who)
                if outcome.status is ItemStatus.FAILED:
                    failed = outcome
                    raise _Undo
        except _Undo:
            assert failed is not None
            return failed
        return outcome

    def _handle(
        self, tx: Transaction, migration: Migration, item: MigrationItem, who: Actor
    ) -> ItemOutcome:
        try:
            current = lifecycle.load(tx, item.owner, with_plans=_versions_of(migration, [item]))
        except SubscriptionNotFound:
            return ItemOutcome.skipped(SkipReason.ENDED)
        in_flight = {item.owner} if change_in_flight(tx.uow, item.owner) else set()
        return self._decide(tx, migration, item, who, current, in_flight)

    def _decide(
        self,
        tx: Transaction,
        migration: Migration,
        item: MigrationItem,
        who: Actor,
        current: Subscription | None,
        in_flight: set[Owner],
        writer: lifecycle.Writer = lifecycle.store,
    ) -> ItemOutcome:
        """The item's outcome, its subscription read under the owner's terms lock as
        ``current`` (``None``: the owner has none); a move (or scheduled move) goes to
        ``writer``. Every check that can fail it runs before that."""
        if current is None:
            return ItemOutcome.skipped(SkipReason.ENDED)
        why = skip_reason(migration, current, change_in_flight=item.owner in in_flight)
        if why is not None:
            return ItemOutcome.skipped(why)
        at = move_instant(migration, current)
        try:
            if at is not None and at > tx.now:
                return schedule_move(
                    tx, migration, current, who, self._assignment, self._rt.policy, writer
                )
            return self._move(tx, migration, current, who, writer)
        except OverQuotaRefused:
            return ItemOutcome.skipped(SkipReason.OVER_QUOTA)
        except (StaleWrite, Busy, StorageError):
            raise  # a lost race or the database: the whole unit of work goes again
        except EntitlementsError as error:
            return _failure(error)

    def _move(
        self,
        tx: Transaction,
        migration: Migration,
        current: Subscription,
        who: Actor,
        writer: lifecycle.Writer,
    ) -> ItemOutcome:
        held, target = tx.uow.plans.get_many(
            [
                (migration.plan_key, current.plan_version),
                (migration.plan_key, migration.to_version),
            ]
        )
        if changes_nothing(held, target):
            return ItemOutcome.skipped(SkipReason.NO_DIFF)
        reason = move_reason(migration)
        lifecycle.change_plan(
            tx,
            self._assignment,
            who,
            current,
            migration.plan_key,
            migration.if_over_quota,
            version=migration.to_version,
            reason=reason,
            action="migrate",
            writer=writer,
        )
        return ItemOutcome(ItemStatus.MOVED, moved_from=current.plan_version)

    # -- canceling -------------------------------------------------------------------

    def cancel(
        self,
        migration_id: str,
        *,
        actor: Actor | str,
        reason: str | None = None,
        tenant: str | None = None,
        now: datetime | None = None,
    ) -> MigrationProgress:
        """Stop the migration: moved items stay moved, pending ones are marked canceled,
        scheduled ones are unscheduled (`unschedule_move`: ``canceled``; ``moved`` when
        their move has applied already; left ``scheduled``, with why, when the
        subscription's pending change is no longer the migration's). A canceled migration
        cannot be canceled again, nor a completed one with nothing scheduled
        (`InvalidInput`)."""
        migration_id = check_id(migration_id, "migration_id", max_length=64)
        who, reason = as_actor(actor), check_reason(reason)
        with self._rt.transaction(tenant, now) as tx:
            migration = tx.uow.migrations.get(migration_id)
            tx.authorize(who, "migration.cancel", subject=migration_id)
            live = [MigrationStatus.DRAFT, MigrationStatus.RUNNING]
            if tx.uow.migrations.counts(migration_id).get(ItemStatus.SCHEDULED.value):
                live.append(MigrationStatus.COMPLETED)  # its moves are still to take back
            if not tx.uow.migrations.set_status(
                migration_id, tuple(live), MigrationStatus.CANCELED, tx.now
            ):
                raise InvalidInput(
                    "migration_id", f"the migration is {migration.status.value} already"
                )
            canceled = tx.uow.migrations.cancel_pending(migration_id, tx.now)
            scheduled = ItemStatus.SCHEDULED.value
            why = f"migration {migration_id} canceled" + (f": {reason}" if reason else "")
            after = 0
            while page := tx.uow.migrations.items(
                migration_id, after=after, limit=_PAGE, status=scheduled
            ):
                for item in page:
                    tx.uow.migrations.settle(unschedule_move(tx, migration, item, who, why))
                after = page[-1].seq
            counts = all_counts(tx.uow.migrations.counts(migration_id))
            tx.record(
                who,
                "migration.cancel",
                migration.target,
                before=_summary(migration),
                after={"canceled_items": canceled, **counts},
                reason=reason,
            )
            stored = attrs.evolve(migration, status=MigrationStatus.CANCELED, updated_at=tx.now)
            return MigrationProgress(stored, counts)

    # -- the price lock --------------------------------------------------------------

    def price_version(self, owner: Owner, at: datetime | None = None) -> int:
        """The plan version whose price the owner's subscription is charged at ``at``
        (default: now): the version a migration moved it from while that migration's
        price lock holds, its own version otherwise (`price_version_at`). Raises
        `SubscriptionNotFound` when it had none then."""
        owner = as_owner(owner)
        now = self._rt.read_now(owner.tenant)
        when = now if at is None else given_utc(at, "at")
        with self._rt.read(owner.tenant) as uow:
            found = (
                uow.subscriptions.at(owner, when)
                if when < now
                else uow.subscriptions.current(owner)
            )
            if found is None:
                raise SubscriptionNotFound(owner)
            locks = uow.migrations.price_locks(found.id)
        return price_version_at(as_of(found, when), when, locks)


@attrs.frozen
class _Job:
    """What every group of one `Migrations.run` call shares."""

    migration: Migration
    who: Actor
    tenant: str | None
    now: datetime | None


def _in_lock_order(items: Iterable[MigrationItem]) -> list[MigrationItem]:
    """Items in the one order every run takes their owners' terms locks in."""
    return sorted(items, key=lambda item: (owner_key(item.owner), item.seq))


def _versions_of(
    migration: Migration, items: Iterable[MigrationItem]
) -> list[tuple[str, int | None]]:
    """The plan versions handling ``items`` compares: each one moved from, and the
    target (read with the subscriptions, so the moves find them there)."""
    held = sorted({item.from_version for item in items})
    return [(migration.plan_key, v) for v in (*held, migration.to_version)]


def _moving_status(migration: Migration, current: Subscription, now: datetime) -> ItemStatus:
    """``scheduled`` for a move at an instant still to come, ``moved`` otherwise."""
    at = move_instant(migration, current)
    return ItemStatus.SCHEDULED if at is not None and at > now else ItemStatus.MOVED


def _summary(migration: Migration) -> dict[str, Any]:
    return {
        "plan_key": migration.plan_key,
        "to_version": migration.to_version,
        "from_versions": None if migration.from_versions is None else list(migration.from_versions),
        "at": migration.move.value if migration.move_at is None else migration.move_at.isoformat(),
        "price_lock_until": None
        if migration.price_lock_until is None
        else migration.price_lock_until.isoformat(),
        "if_over_quota": migration.if_over_quota.value,
        "status": migration.status.value,
    }


def _progress(uow: UnitOfWork, migration: Migration) -> MigrationProgress:
    return MigrationProgress(migration, all_counts(uow.migrations.counts(migration.id)))


def _target(
    uow: UnitOfWork, plan_key: str, to_version: int | None, versions: tuple[int, ...] | None
) -> tuple[Plan, tuple[int, ...]]:
    """The version moved to and the versions moved from, checked against the catalog."""
    target = uow.plans.get(plan_key, to_version)
    known = {plan.version for plan in uow.plans.versions(plan_key)}
    if versions is None:
        return target, tuple(v for v in sorted(known) if v < target.version)
    unknown = [v for v in versions if v not in known]
    if unknown:
        raise UnknownPlan(plan_key, unknown[0])
    if target.version in versions:
        raise InvalidInput(
            "from_versions", f"v{target.version} is the version moved to", list(versions)
        )
    return target, versions


def _chosen(
    uow: UnitOfWork, plan_key: str, moving: tuple[int, ...], owners: tuple[Owner, ...] | None
) -> Sequence[Subscription]:
    """The subscriptions a new migration moves: every live one on a version moved from,
    or those of ``owners`` — each of which must hold one (`InvalidInput` names those that
    do not)."""
    if owners is None:
        return uow.migrations.subscribers(plan_key, moving) if moving else []
    found, missing = [], []
    for owner in owners:
        current = uow.subscriptions.current(owner)
        if (
            current is None
            or current.is_terminal
            or current.plan_key != plan_key
            or current.plan_version not in moving
        ):
            missing.append(str(owner))
        else:
            found.append(current)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InvalidInput(
            "owners",
            f"{len(missing)} owner(s) hold no live subscription on {plan_key} at a version "
            f"moved from: {shown}",
        )
    return found
