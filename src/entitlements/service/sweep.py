"""The sweep: applies what time has made due (seed 002's "trial-expiry worker").

Run it from a scheduler every minute or so — on every pod if that is simpler: any
number of sweeps may run at once. Each due item (a subscription's due steps, an expired
override, a reservation that ran out, a contract whose signing window closed) is handled
in its own unit of work that first *claims* the item's owner — the owner's lock, taken
only if nobody holds it (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB; SQLite and
the memory store have one writer at a time) — and then reads the item again: so each
change is applied and audited once, by whichever worker claimed it, and a worker never
waits behind another. An item whose owner is held is left to its holder (reported in
``conflicts``); an item that fails is reported in ``failures`` and logged, and the rest
proceed. A run works through everything due, in pages of ``batch``; ``remaining`` says
how much was still due when it ended.

Due subscriptions, the bulk of a busy run, go a group to a unit of work (`Sweep._together`):
the group's owners claimed with one statement, each item brought to now by the same
kernel step, one commit. A group in which anything raises is handled again item by item
as above, so grouping changes how many round trips carry the rules, never the outcome.

Idempotency keys (of usage and of keyed requests) older than the retention window (`KEY_RETENTION`, 30 days by
default) are forgotten by the sweep as well.

It also prunes the change feed. Entries are stamped with the database host's wall clock
at commit (not the library's clock, which tests and replays move at will), so retention
is wall-clock time: a follower that was away longer than ``feed_retention`` finds the
feed pruned past its position and drops its whole cache, which costs cold resolutions
but is never wrong. Followers read the feed every ``max_staleness``, so an hour is far
more than they need while keeping the table to an hour of writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from entitlements.domain.contracts.contract import Contract
from entitlements.domain.due import DueChange, shared_terms
from entitlements.domain.override import Override
from entitlements.domain.owner import Owner
from entitlements.domain.provider_commands import ProviderCommand
from entitlements.domain.usage import Reservation
from entitlements.errors import InvalidInput
from entitlements.ports import UnitOfWork
from entitlements.service.due import SWEEPER, bring_to_now
from entitlements.service.notifications import purge, write_due
from entitlements.service.overrides import target
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.terms import expire_held

if TYPE_CHECKING:
    from entitlements.domain.notification import NotificationSettings
    from entitlements.service.provider_outbox import ProviderOutbox

__all__ = ["FEED_RETENTION", "KEY_RETENTION", "Sweep", "SweepFailure", "SweepReport"]

log = logging.getLogger("entitlements.sweep")

_HELD_ROUNDS = 3
_GROUP = 100  # items of a kind handled in one unit of work (see `Sweep._together`)
_HELD_PAUSE = 0.05  # seconds, times the round

KEY_RETENTION = timedelta(days=30)
"""How long a usage idempotency key is remembered: a retry within it counts once."""

FEED_RETENTION = timedelta(hours=1)
"""How long change-feed entries are kept by default (wall-clock time)."""

_PRUNE_BATCH = 10_000
_PRUNE_ROUNDS = 100


def _check_feed_retention(retention: timedelta) -> None:
    if not isinstance(retention, timedelta) or retention < timedelta(0):
        raise InvalidInput("feed_retention", "must be a timedelta of zero or more", retention)


@attrs.frozen
class SweepFailure:
    """One item the sweep could not apply; it stays due and the next run tries again."""

    item: str
    """The item that failed (``subscription:<id>``, ``contract:<id>``...)."""
    owner: Owner | None
    """Its owner, when known."""
    error: str
    """The error's class name."""
    message: str
    """The error's message."""


@attrs.frozen
class SweepReport:
    """What one run did. ``conflicts`` names the items left to another worker (or a write)
    that held their owner; ``failures`` the items that raised; ``remaining`` counts what
    was still due at ``now`` when the run ended (those two kinds, or items that fell due
    for another worker meanwhile): zero after an uneventful run."""

    now: datetime
    """The time the sweep ran for."""
    changes: tuple[DueChange, ...] = ()
    """Time-driven subscription changes stored and audited, each dated when it fell due."""
    expired_overrides: tuple[Override, ...] = ()
    """Overrides past their end that were removed."""
    conflicts: tuple[str, ...] = ()
    """Owners skipped because another writer changed them meanwhile; the next run picks them
    up."""
    snapshots_dropped: int = 0
    """Cached snapshots dropped because of the changes."""
    expired_reservations: tuple[Reservation, ...] = ()
    """Reservations past their end whose units were freed."""
    expired_contracts: tuple[Contract, ...] = ()
    """Open contracts whose signing window ended."""
    failures: tuple[SweepFailure, ...] = ()
    """Items that raised; they stay due and the next run tries again."""
    remaining: int = 0
    """What was still due when the run ended (zero after an uneventful run)."""
    keys_forgotten: int = 0
    """Idempotency keys (of usage and of keyed requests) forgotten past their
    retention."""
    provider_commands: tuple[ProviderCommand, ...] = ()
    """Commands to the payment provider sent (or attempted again) by this run."""
    feed_entries_pruned: int = 0
    """Change-feed entries older than the feed retention that were deleted."""
    notifications_written: int = 0
    """Notifications time brought (trials ending, contracts unsigned...) written by this
    run; a fact written before is not counted again."""
    notifications_purged: int = 0
    """Delivered notifications older than their retention that were forgotten."""

    @property
    def nothing_due(self) -> bool:
        """Whether the run found nothing to do."""
        return not (
            self.changes
            or self.expired_overrides
            or self.expired_reservations
            or self.expired_contracts
            or self.provider_commands
        )


@attrs.frozen
class _Item:
    key: str
    owner: Owner
    act: Callable[[Transaction], Sequence[Any]]
    together: bool = False
    """Whether items of this kind are handled a group to a unit of work (see `_together`)."""
    subscription_id: str | None = None
    """The subscription the item reads first (a group reads them at once)."""


@attrs.define
class _Run:
    at: datetime
    changes: list[DueChange] = attrs.field(factory=list)
    overrides: list[Override] = attrs.field(factory=list)
    reservations: list[Reservation] = attrs.field(factory=list)
    contracts: list[Contract] = attrs.field(factory=list)
    conflicts: list[str] = attrs.field(factory=list)
    failures: list[SweepFailure] = attrs.field(factory=list)
    remaining: int = 0
    keys_forgotten: int = 0
    commands: list[ProviderCommand] = attrs.field(factory=list)
    notified: int = 0
    purged: int = 0
    handled: int = 0
    progress: Callable[[int], None] | None = None


Lister = Callable[[UnitOfWork, datetime, int], list[_Item]]


@attrs.define
class _Progress:
    """One kind of item through a run: the keys handled (or tried), the keys whose owner
    was held, and how many times the held ones were waited for."""

    seen: set[str] = attrs.field(factory=set)
    held: set[str] = attrs.field(factory=set)
    rounds: int = 0

    def wait_for_held(self, page: list[_Item], run: _Run) -> bool:
        """With nothing fresh left: whether to try the held items again (after a pause
        that grows each round); when not, they are left to their holder and what is
        still due is counted."""
        still_held = {item.key for item in page} & self.held
        if not still_held or self.rounds == _HELD_ROUNDS:
            run.conflicts.extend(sorted(still_held))
            run.remaining += len(page)
            return False
        self.rounds += 1
        time.sleep(_HELD_PAUSE * self.rounds)
        self.seen -= still_held
        self.held -= still_held
        return True


class Sweep:
    def __init__(
        self,
        runtime: Runtime,
        outbox: ProviderOutbox | None = None,
        notifications: NotificationSettings | None = None,
    ) -> None:
        self._rt = runtime
        self._outbox = outbox
        self._notifications = notifications

    def process_due(
        self,
        now: datetime | None = None,
        *,
        batch: int = 500,
        key_retention: timedelta = KEY_RETENTION,
        feed_retention: timedelta = FEED_RETENTION,
        progress: Callable[[int], None] | None = None,
    ) -> SweepReport:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInput("batch", "must be a positive whole number", batch)
        if not isinstance(key_retention, timedelta) or key_retention <= timedelta(0):
            raise InvalidInput("key_retention", "must be a positive timedelta", key_retention)
        _check_feed_retention(feed_retention)
        run = _Run(self._rt.now(now), progress=progress)
        for tenant in self._rt.store.tenants():
            for lister, into in (
                (self._due_subscriptions, run.changes),
                (self._expired_overrides, run.overrides),
                (self._expired_reservations, run.reservations),
                (self._expired_contracts, run.contracts),
            ):
                self._drain(tenant, lister, into, run, batch)
            self._fold_counts(tenant)
            self._forget_keys(tenant, run, run.at - key_retention, batch)
            if self._outbox is not None:
                run.commands.extend(self._outbox.send_due(tenant, run.at, batch))
            self._notify(tenant, run)
        dropped = self._rt.cache.expire(run.at)
        pruned = self.prune_feed(feed_retention)
        return SweepReport(
            run.at,
            tuple(run.changes),
            tuple(run.overrides),
            tuple(run.conflicts),
            dropped,
            tuple(run.reservations),
            tuple(run.contracts),
            tuple(run.failures),
            run.remaining,
            run.keys_forgotten,
            tuple(run.commands),
            pruned,
            run.notified,
            run.purged,
        )

    def prune_feed(self, retention: timedelta) -> int:
        """Delete feed entries committed more than ``retention`` ago (wall clock), in
        batches of their own transactions so a large backlog never holds one long lock."""
        _check_feed_retention(retention)
        before = datetime.now(UTC) - retention
        total = 0
        for _ in range(_PRUNE_ROUNDS):
            with self._rt.store.unit_of_work(None) as uow:
                deleted = uow.feed.prune(before, _PRUNE_BATCH)
                uow.commit()
            total += deleted
            if deleted < _PRUNE_BATCH:
                break
        return total

    def _fold_counts(self, tenant: str | None) -> None:
        """Fold the tenant's status counts (each subscription write appended its own
        changes), in batches of their own transactions, so that reading them costs a row
        per status and the changes since the last sweep."""
        for _ in range(_PRUNE_ROUNDS):
            with self._rt.store.unit_of_work(tenant) as uow:
                folded = uow.subscriptions.fold_status_counts(_PRUNE_BATCH)
                uow.commit()
            if folded < _PRUNE_BATCH:
                return

    def _drain(
        self, tenant: str | None, lister: Lister, into: list[Any], run: _Run, batch: int
    ) -> None:
        """Every item the lister finds due, page after page: handled items stop being due,
        failed ones are not tried again this run. Items whose owner was held are tried
        again a few times once the rest is done (the holder may have been busy with
        another of the owner's items); those still held then are left to the holder."""
        progress = _Progress()
        while True:
            page = self._page(tenant, lister, run, batch + len(progress.seen))
            if page is None:
                return
            fresh = [item for item in page if item.key not in progress.seen]
            if not fresh:
                if progress.wait_for_held(page, run):
                    continue
                return
            self._work(tenant, fresh, progress, into, run)
            run.handled += len(fresh)
            if run.progress is not None:
                run.progress(run.handled)

    def _page(
        self, tenant: str | None, lister: Lister, run: _Run, limit: int
    ) -> list[_Item] | None:
        """The next page of due items; ``None`` (and a failure reported) if it cannot be
        read: the other kinds proceed."""
        try:
            with self._rt.read(tenant) as uow:
                return lister(uow, run.at, limit)
        except Exception as error:
            log.exception("sweep: listing %s of %r failed", lister.__name__, tenant)
            item = f"{lister.__name__.strip('_')}:{tenant or ''}"
            run.failures.append(SweepFailure(item, None, type(error).__name__, str(error)))
            return None

    def _work(
        self,
        tenant: str | None,
        fresh: list[_Item],
        progress: _Progress,
        into: list[Any],
        run: _Run,
    ) -> None:
        """Handle ``fresh`` items, a group at a time: their results go ``into``, and the
        items whose owner was held are noted in ``progress``."""
        for first in range(0, len(fresh), _GROUP):
            group = fresh[first : first + _GROUP]
            progress.seen.update(item.key for item in group)
            outcomes = self._handle(tenant, group, run)
            for item, (done, results) in zip(group, outcomes, strict=True):
                if not done:
                    progress.held.add(item.key)
                into.extend(results)

    def _handle(
        self, tenant: str | None, group: list[_Item], run: _Run
    ) -> list[tuple[bool, Sequence[Any]]]:
        """Each item's outcome (as `_one`'s): the group in one unit of work when its kind
        allows, else (or when the group failed) item by item."""
        if len(group) > 1 and all(item.together for item in group):
            done = self._together(tenant, group, run)
            if done is not None:
                return done
        return [self._one(tenant, item, run) for item in group]

    def _together(
        self, tenant: str | None, group: list[_Item], run: _Run
    ) -> list[tuple[bool, Sequence[Any]]] | None:
        """The group in one unit of work: its owners claimed with one statement, each item
        acted on in turn, one commit — the round trips a unit of work costs (begin, claim,
        the plans read, the audit, history, notification and feed rows written, commit)
        paid once per group, not per item; time's steps worked out once for subscriptions
        on the same terms (`shared_terms`). ``None`` when any item raised: nothing of the
        group is stored, and the caller handles it item by item, so one failing item is
        reported alone and costs the others nothing."""
        try:
            with self._rt.transaction(tenant, run.at) as tx:
                claimed = tx.uow.revisions.claim_many([item.owner for item in group])
                tx.uow.subscriptions.read_ahead(
                    [i.subscription_id for i in group if i.subscription_id and i.owner in claimed]
                )
                subscriptions = all(item.subscription_id for item in group)
                with tx.states_held() if subscriptions else nullcontext(), shared_terms():
                    return [
                        (True, item.act(tx)) if item.owner in claimed else (False, ())
                        for item in group
                    ]
        except Exception:
            log.info("sweep: a group of %d failed; trying its items one by one", len(group))
            return None

    def _one(self, tenant: str | None, item: _Item, run: _Run) -> tuple[bool, Sequence[Any]]:
        """(False, ()) if another unit of work held the item's owner."""
        try:
            with self._rt.transaction(tenant, run.at) as tx:
                if not tx.uow.revisions.claim(item.owner):
                    return False, ()
                return True, item.act(tx)
        except Exception as error:
            log.exception("sweep: %s of %s failed; the rest proceed", item.key, item.owner)
            run.failures.append(
                SweepFailure(item.key, item.owner, type(error).__name__, str(error))
            )
            return True, ()

    # -- what is due ---------------------------------------------------------------------

    def _due_subscriptions(self, uow: UnitOfWork, at: datetime, limit: int) -> list[_Item]:
        def advance(subscription_id: str) -> Callable[[Transaction], Sequence[Any]]:
            def act(tx: Transaction) -> Sequence[Any]:
                return bring_to_now(tx, tx.uow.subscriptions.get(subscription_id))[1]

            return act

        return [
            _Item(f"subscription:{id_}", owner, advance(id_), True, id_)
            for id_, owner in uow.subscriptions.due_ids(at, limit)
        ]

    def _expired_overrides(self, uow: UnitOfWork, at: datetime, limit: int) -> list[_Item]:
        def expire(read: Override) -> Callable[[Transaction], Sequence[Any]]:
            def act(tx: Transaction) -> Sequence[Any]:
                # conditional: an override staff renewed since it was read stays
                removed = tx.uow.overrides.remove_expired(read.owner, read.kind, read.key, tx.now)
                if removed is None:
                    return ()
                tx.record(
                    SWEEPER,
                    "override.expire",
                    target(read.owner, read.kind, read.key),
                    owner=read.owner,
                    before=removed,
                    reason="override expired",
                )
                return (removed,)

            return act

        return [
            _Item(target(o.owner, o.kind, o.key), o.owner, expire(o))
            for o in uow.overrides.expired(at, limit)
        ]

    def _expired_reservations(self, uow: UnitOfWork, at: datetime, limit: int) -> list[_Item]:
        def expire(held: Reservation) -> Callable[[Transaction], Sequence[Any]]:
            return lambda tx: expire_held(tx, [held])  # settles only if still held

        return [
            _Item(f"reservation:{r.id}", r.owner, expire(r))
            for r in uow.usage.held_reservations_due(at, limit)
        ]

    def _expired_contracts(self, uow: UnitOfWork, at: datetime, limit: int) -> list[_Item]:
        # the contract machinery (and cryptography) loads only for a host that has contracts
        from entitlements.service.contracts.records import expire_if_due

        def expire(contract_id: str) -> Callable[[Transaction], Sequence[Any]]:
            def act(tx: Transaction) -> Sequence[Any]:
                stored = expire_if_due(tx, contract_id)
                return () if stored is None else (stored,)

            return act

        return [
            _Item(f"contract:{c.id}", c.owner, expire(c.id))
            for c in uow.contracts.expired(at, limit)
        ]

    def _notify(self, tenant: str | None, run: _Run) -> None:
        """Write the notifications time brought; forget delivered ones past retention."""
        if self._notifications is None:
            return
        try:
            run.notified += write_due(self._rt, self._notifications, tenant, run.at)
            run.purged += purge(self._rt, self._notifications, tenant, run.at)
        except Exception as error:
            log.exception("sweep: notifications of %r failed", tenant)
            run.failures.append(
                SweepFailure(
                    f"notifications:{tenant or ''}", None, type(error).__name__, str(error)
                )
            )

    def _forget_keys(self, tenant: str | None, run: _Run, before: datetime, batch: int) -> None:
        try:
            while True:
                with self._rt.transaction(tenant, run.at) as tx:
                    forgotten = tx.uow.usage.forget_keys(before, batch)
                    forgotten += tx.uow.requests.forget(before, batch - forgotten)
                run.keys_forgotten += forgotten
                if forgotten < batch:
                    return
        except Exception as error:
            log.exception("sweep: forgetting old idempotency keys of %r failed", tenant)
            run.failures.append(
                SweepFailure(f"usage-keys:{tenant or ''}", None, type(error).__name__, str(error))
            )
