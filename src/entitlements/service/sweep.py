"""The sweep: applies what time has made due (seed 002's "trial-expiry worker").

Run it from a scheduler every minute or so. It is idempotent — a second run at the same
``now`` finds nothing to do — and it handles each subscription in its own unit of work,
so one owner's conflict does not hold up the rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from entitlements.domain.contracts.contract import Contract
from entitlements.domain.due import DueChange
from entitlements.domain.override import Override
from entitlements.domain.usage import Reservation
from entitlements.errors import StaleWrite
from entitlements.service.due import SWEEPER, bring_to_now
from entitlements.service.overrides import target
from entitlements.service.runtime import Runtime
from entitlements.service.usage import Usage

if TYPE_CHECKING:
    from entitlements.service.contracts import Contracts

__all__ = ["Sweep", "SweepReport"]


@attrs.frozen
class SweepReport:
    now: datetime
    changes: tuple[DueChange, ...] = ()
    expired_overrides: tuple[Override, ...] = ()
    conflicts: tuple[str, ...] = ()
    snapshots_dropped: int = 0
    expired_reservations: tuple[Reservation, ...] = ()
    expired_contracts: tuple[Contract, ...] = ()

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

    def process_due(self, now: datetime | None = None, *, batch: int = 500) -> SweepReport:
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
        return SweepReport(
            at,
            tuple(changes),
            tuple(expired),
            tuple(conflicts),
            dropped,
            tuple(reservations),
            tuple(contracts),
        )

    def _advance(self, tenant: str | None, subscription_id: str, at: datetime) -> list[DueChange]:
        with self._rt.transaction(tenant, at) as tx:
            return bring_to_now(tx, tx.uow.subscriptions.get(subscription_id))[1]
