"""The sweep: applies what time has made due (seed 002's "trial-expiry worker").

Run it from a scheduler every minute or so. It is idempotent — a second run at the same
``now`` finds nothing to do — and it handles each subscription in its own unit of work,
so one owner's conflict does not hold up the rest.

It also prunes the change feed. Entries are stamped with the database host's wall clock
at commit (not the library's clock, which tests and replays move at will), so retention
is wall-clock time: a follower that was away longer than ``feed_retention`` finds the
feed pruned past its position and drops its whole cache, which costs cold resolutions
but is never wrong. Followers read the feed every ``max_staleness``, so an hour is far
more than they need while keeping the table to an hour of writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs

from entitlements.domain.contracts.contract import Contract
from entitlements.domain.due import DueChange
from entitlements.domain.override import Override
from entitlements.domain.usage import Reservation
from entitlements.errors import InvalidInput, StaleWrite
from entitlements.service.contracts import Contracts
from entitlements.service.due import SWEEPER, bring_to_now
from entitlements.service.overrides import target
from entitlements.service.runtime import Runtime
from entitlements.service.usage import Usage

__all__ = ["FEED_RETENTION", "Sweep", "SweepReport"]

FEED_RETENTION = timedelta(hours=1)
"""How long change-feed entries are kept by default (wall-clock time)."""

_PRUNE_BATCH = 10_000
_PRUNE_ROUNDS = 100


@attrs.frozen
class SweepReport:
    now: datetime
    changes: tuple[DueChange, ...] = ()
    expired_overrides: tuple[Override, ...] = ()
    conflicts: tuple[str, ...] = ()
    snapshots_dropped: int = 0
    expired_reservations: tuple[Reservation, ...] = ()
    expired_contracts: tuple[Contract, ...] = ()
    feed_entries_pruned: int = 0

    @property
    def nothing_due(self) -> bool:
        return not (
            self.changes
            or self.expired_overrides
            or self.expired_reservations
            or self.expired_contracts
        )


class Sweep:
    def __init__(self, runtime: Runtime, usage: Usage, contracts: Contracts) -> None:
        self._rt = runtime
        self._usage = usage
        self._contracts = contracts

    def process_due(
        self,
        now: datetime | None = None,
        *,
        batch: int = 500,
        feed_retention: timedelta = FEED_RETENTION,
    ) -> SweepReport:
        at = self._rt.now(now)
        changes: list[DueChange] = []
        expired: list[Override] = []
        conflicts: list[str] = []
        reservations: list[Reservation] = []
        contracts: list[Contract] = []
        for tenant in self._rt.store.tenants():
            with self._rt.read(tenant) as uow:
                due_ids = [s.id for s in uow.subscriptions.due(at, batch)]
                stale = list(uow.overrides.expired(at, batch))
            for sub_id in due_ids:
                try:
                    changes.extend(self._advance(tenant, sub_id, at))
                except StaleWrite:
                    conflicts.append(sub_id)
            for override in stale:
                with self._rt.transaction(tenant, at) as tx:
                    removed = tx.uow.overrides.remove(override.owner, override.kind, override.key)
                    tx.record(
                        SWEEPER,
                        "override.expire",
                        target(override.owner, override.kind, override.key),
                        owner=override.owner,
                        before=removed,
                        reason="override expired",
                    )
                    expired.append(removed)
            reservations.extend(self._usage.expire_reservations(tenant, at, batch))
            contracts.extend(self._contracts.expire_due(tenant, at, batch))
        dropped = self._rt.cache.expire(at)
        pruned = self.prune_feed(feed_retention)
        return SweepReport(
            at,
            tuple(changes),
            tuple(expired),
            tuple(conflicts),
            dropped,
            tuple(reservations),
            tuple(contracts),
            pruned,
        )

    def prune_feed(self, retention: timedelta) -> int:
        """Delete feed entries committed more than ``retention`` ago (wall clock), in
        batches of their own transactions so a large backlog never holds one long lock."""
        if not isinstance(retention, timedelta) or retention < timedelta(0):
            raise InvalidInput("feed_retention", "must be a timedelta of zero or more", retention)
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

    def _advance(self, tenant: str | None, subscription_id: str, at: datetime) -> list[DueChange]:
        with self._rt.transaction(tenant, at) as tx:
            return bring_to_now(tx, tx.uow.subscriptions.get(subscription_id))[1]
