"""Use cases for seats: named members assigned up to the purchased seat count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.checks import check_key, check_reason
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.plan import LimitKind
from entitlements.domain.usage import (
    FOREVER,
    CounterAddition,
    SeatAssignment,
    alert_terms,
    check_member,
)
from entitlements.errors import Conflict, InvalidInput
from entitlements.service.notifications import notify_usage
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime
from entitlements.service.terms import count, terms_for_write

__all__ = ["Seats"]


def target(owner: Owner, pool: str, member: str) -> str:
    return f"seat:{owner}:{pool}:{member}"


class Seats:
    """``ents.seats``: named members holding the seats of an owner's seat limit."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    @retries_lost_races
    def assign(
        self,
        owner: Owner,
        member: str,
        *,
        actor: Actor | str,
        pool: str = "seats",
        now: datetime | None = None,
        reason: str | None = None,
    ) -> SeatAssignment:
        """Give ``member`` one of the owner's seats; refused past a hard seat limit."""
        owner, who, member = as_owner(owner), as_actor(actor), check_member(member)
        pool, reason = check_key(pool, "pool"), check_reason(reason)
        rt = self._rt
        with rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "seat.assign", owner, member)
            snapshot = terms_for_write(rt, tx, owner)
            definition = snapshot.limit_definition(pool)
            if definition is not None and definition.kind is not LimitKind.SEATS:
                raise InvalidInput(
                    "pool", f"{pool} is a {definition.kind.value} limit, not seats", pool
                )
            assignment = SeatAssignment(owner, member, tx.now, pool)
            if any(a.member == member for a in tx.uow.seats.assigned(owner, pool)):
                raise Conflict(f"{member} already holds a {pool} seat of {owner}")
            # the counter first: concurrent assigners queue on its row lock in one order
            counted_under, after, _ = count(rt, tx, owner, pool, 1, snapshot)
            tx.uow.seats.add(assignment)
            tx.touch_usage(owner)
            thresholds = alert_terms(counted_under, pool, counted_under.limit_definition(pool))
            notify_usage(tx, owner, thresholds, after.used - 1, after.used)
            limit = counted_under.limit(pool, 0)
            over = limit is not None and after.used > limit
            tx.record(
                who,
                "seat.assign",
                target(owner, pool, member),
                owner=owner,
                after=assignment,
                reason=reason if not over else f"over the soft seat limit {limit}",
            )
            return assignment

    @retries_lost_races
    def unassign(
        self,
        owner: Owner,
        member: str,
        *,
        actor: Actor | str,
        pool: str = "seats",
        now: datetime | None = None,
        reason: str | None = None,
    ) -> SeatAssignment:
        """Free ``member``'s seat."""
        owner, who, member = as_owner(owner), as_actor(actor), check_member(member)
        pool, reason = check_key(pool, "pool"), check_reason(reason)
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "seat.unassign", owner, member)
            removed = tx.uow.seats.remove(owner, pool, member)
            tx.uow.usage.add(CounterAddition(owner, pool, FOREVER, used=-1))
            tx.touch_usage(owner)
            tx.record(
                who,
                "seat.unassign",
                target(owner, pool, member),
                owner=owner,
                before=removed,
                reason=reason,
            )
            return removed

    def list(self, owner: Owner, pool: str = "seats") -> Sequence[SeatAssignment]:
        """Who holds the owner's seats in ``pool``."""
        owner, pool = as_owner(owner), check_key(pool, "pool")
        with self._rt.read(owner.tenant) as uow:
            return uow.seats.assigned(owner, pool)
