"""Use cases for usage against limits: check (no side effect), consume (check and record
atomically, idempotent by key), gauges, reservations for long jobs, totals and history.

A warm ``check`` reads the owner's cached snapshot and cached counter: no I/O. Any usage
write drops the owner's cached counters (not its snapshot); a cold check loads the
counter with one query. Consumption is not written to the audit trail — the usage ledger
is its own record — except when a soft limit is passed, which is audited (and so heard
by listeners) as ``usage.over_limit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.plan import Enforcement, LimitKind
from entitlements.domain.resolution import Reason, Snapshot
from entitlements.domain.usage import (
    Counter,
    Reservation,
    ReservationStatus,
    UsageDecision,
    UsageRecord,
    check_amount,
    check_idempotency_key,
    decide,
    usage_period_start,
)
from entitlements.errors import InvalidInput, LimitExceeded, UsageDenied
from entitlements.ports import UnitOfWork
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.snapshots import load_snapshot

__all__ = ["Usage"]

APP = Actor.system("app")
MAX_TTL = timedelta(days=31)


def refuse(decision: UsageDecision) -> UsageDenied:
    if decision.limit is not None and decision.reason not in (
        Reason.READ_ONLY,
        Reason.UNKNOWN,
        Reason.STATUS,
        Reason.NO_SUBSCRIPTION,
    ):
        return LimitExceeded(
            decision.metric,
            decision.limit,
            decision.used + decision.reserved,
            decision.requested,
            decision,
        )
    return UsageDenied(
        decision.metric, f"not allowed: {decision.reason.value} ({decision.detail})", decision
    )


def target(owner: Owner, metric: str) -> str:
    return f"usage:{owner}:{metric}"


class Usage:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    # -- reading -----------------------------------------------------------------------

    def check(self, owner: Owner, metric: str, amount: int = 1) -> UsageDecision:
        """May ``owner`` use ``amount`` more of ``metric``? No side effect. Warm, it is a
        few dict lookups: decisions are kept until the owner's usage or entitlements
        change."""
        cache = self._rt.cache
        if type(amount) is int:
            memo = cache.decisions.get(owner)
            if memo is not None:
                known = memo.get((metric, amount))
                if known is not None:
                    return known
        generation = cache.generation
        snapshot = cache.snapshots.get(owner)
        counter = None
        if snapshot is not None:
            counters = cache.counters.get(owner)
            if counters is not None:
                counter = counters.get(
                    (metric, usage_period_start(snapshot, snapshot.limit_definition(metric)))
                )
        if snapshot is None or counter is None:
            return self._check_cold(as_owner(owner), metric, check_amount(amount))
        decision = decide(snapshot, metric, counter, check_amount(amount))
        cache.put_decision(decision, generation)
        return decision

    def _check_cold(self, owner: Owner, metric: str, amount: int) -> UsageDecision:
        generation = self._rt.cache.generation
        at = self._rt.now()
        with self._rt.read(owner.tenant) as uow:
            snapshot = self._snapshot(uow, owner, at)
            counter = self._counter(uow, snapshot, metric)
        if not self._rt.in_atomic_block:
            self._rt.cache.put(snapshot, generation)
            self._rt.cache.put_counter(counter, generation)
        return decide(snapshot, metric, counter, amount)

    def _snapshot(self, uow: UnitOfWork, owner: Owner, at: datetime) -> Snapshot:
        """The warm snapshot when there is one (any write to the owner drops it, in this
        unit of work too), else resolved in this unit of work."""
        cached = self._rt.cache.snapshots.get(owner)
        return cached if cached is not None else load_snapshot(uow, owner, at, self._rt.policy)

    def _counter(self, uow: UnitOfWork, snapshot: Snapshot, metric: str) -> Counter:
        period = usage_period_start(snapshot, snapshot.limit_definition(metric))
        return uow.usage.counter(snapshot.owner, metric, period)

    def total(self, owner: Owner, metric: str, period_start: datetime | None = None) -> int:
        """Units used in a period (default: the current one)."""
        return self.counter(owner, metric, period_start).used

    def counter(self, owner: Owner, metric: str, period_start: datetime | None = None) -> Counter:
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            if period_start is None:
                return self._counter(
                    uow, load_snapshot(uow, owner, self._rt.now(), self._rt.policy), metric
                )
            return uow.usage.counter(owner, metric, period_start)

    def history(self, owner: Owner, metric: str) -> Sequence[Counter]:
        """Every period's counter, oldest first: past periods are kept, not overwritten."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return uow.usage.counters(owner, metric)

    def records(
        self, owner: Owner, metric: str, period_start: datetime | None = None
    ) -> Sequence[UsageRecord]:
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            if period_start is None:
                snapshot = load_snapshot(uow, owner, self._rt.now(), self._rt.policy)
                period_start = usage_period_start(snapshot, snapshot.limit_definition(metric))
            return uow.usage.records(owner, metric, period_start)

    # -- writing -----------------------------------------------------------------------

    def consume(
        self,
        owner: Owner,
        metric: str,
        amount: int = 1,
        *,
        key: str | None = None,
        actor: Actor | str = APP,
        now: datetime | None = None,
    ) -> UsageDecision:
        """Check and record ``amount`` units in one unit of work. With ``key``, a retried
        request counts once (the decision comes back with ``duplicate=True``). A hard
        limit raises `LimitExceeded` and records nothing; a soft one records, reports
        ``over_limit`` and audits it."""
        owner, who, amount, key = (
            as_owner(owner),
            as_actor(actor),
            check_amount(amount),
            check_idempotency_key(key),
        )
        with self._rt.transaction(owner.tenant, now) as tx:
            snapshot = self._snapshot(tx.uow, owner, tx.now)
            definition = snapshot.limit_definition(metric)
            if definition is not None and definition.kind is LimitKind.SEATS:
                raise InvalidInput(
                    "metric", f"{metric} counts seats: assign them with ents.seats.assign", metric
                )
            counter = self._counter(tx.uow, snapshot, metric)
            record = UsageRecord(
                self._rt.new_id(), owner, metric, amount, counter.period_start, tx.now, key
            )
            earlier = tx.uow.usage.add_record(record)
            if earlier is not None:
                return decide(snapshot, metric, counter, earlier.amount)._replace(duplicate=True)
            return self._count(tx, who, snapshot, counter, amount)

    def _count(
        self,
        tx: Transaction,
        who: Actor,
        snapshot: Snapshot,
        counter: Counter,
        amount: int,
        *,
        reserve: bool = False,
    ) -> UsageDecision:
        decision = decide(snapshot, counter.metric, counter, amount)
        if not decision.allowed:
            raise refuse(decision)
        ceiling = decision.limit if decision.enforcement is Enforcement.HARD else None
        delta = {"reserved": amount} if reserve else {"used": amount}
        after = tx.uow.usage.add(
            snapshot.owner, counter.metric, counter.period_start, ceiling=ceiling, **delta
        )
        if after is None:  # a concurrent writer took the last units since we read
            raise refuse(
                decide(
                    snapshot,
                    counter.metric,
                    tx.uow.usage.counter(snapshot.owner, counter.metric, counter.period_start),
                    amount,
                )
            )
        tx.touch_usage(snapshot.owner)
        result = decide(snapshot, counter.metric, after, 0)._replace(
            requested=amount,
            over_limit=decision.over_limit,
        )
        if decision.over_limit:
            tx.record(
                who,
                "usage.over_limit",
                target(snapshot.owner, counter.metric),
                owner=snapshot.owner,
                after=_summary(result),
                reason=result.detail,
            )
        return result

    def set_gauge(
        self,
        owner: Owner,
        metric: str,
        amount: int,
        *,
        actor: Actor | str = APP,
        now: datetime | None = None,
    ) -> UsageDecision:
        """Report a gauge's current amount (projects, storage bytes). This records what is
        true and is never refused; passing the limit is reported (``over_limit``) and
        audited, whatever the enforcement."""
        owner, who, amount = as_owner(owner), as_actor(actor), check_amount(amount, allow_zero=True)
        with self._rt.transaction(owner.tenant, now) as tx:
            snapshot = self._snapshot(tx.uow, owner, tx.now)
            definition = snapshot.limit_definition(metric)
            if definition is not None and definition.kind is not LimitKind.GAUGE:
                raise InvalidInput(
                    "metric", f"{metric} is a {definition.kind.value} limit, not a gauge", metric
                )
            before = self._counter(tx.uow, snapshot, metric)
            after = tx.uow.usage.set_used(owner, metric, before.period_start, amount)
            tx.touch_usage(owner)
            result = decide(snapshot, metric, after, 0)
            over = result.limit is not None and after.used + after.reserved > result.limit
            result = result._replace(over_limit=over)
            if over:
                tx.record(
                    who,
                    "usage.over_limit",
                    target(owner, metric),
                    owner=owner,
                    after=_summary(result),
                    reason=f"gauge set to {amount}, limit {result.limit}",
                )
            return result

    def decrease(
        self,
        owner: Owner,
        metric: str,
        amount: int = 1,
        *,
        actor: Actor | str = APP,
        now: datetime | None = None,
    ) -> UsageDecision:
        """A gauge goes down (a project was deleted); never below zero."""
        owner, amount = as_owner(owner), check_amount(amount)
        with self._rt.transaction(owner.tenant, now) as tx:
            snapshot = self._snapshot(tx.uow, owner, tx.now)
            counter = self._counter(tx.uow, snapshot, metric)
            after = tx.uow.usage.add(owner, metric, counter.period_start, used=-amount)
            if after is None:
                raise InvalidInput(
                    "amount",
                    f"{metric} is at {counter.used}; it cannot go down by {amount}",
                    amount,
                )
            tx.touch_usage(owner)
            return decide(snapshot, metric, after, 0)

    # -- reservations ----------------------------------------------------------------

    def reserve(
        self,
        owner: Owner,
        metric: str,
        amount: int,
        *,
        ttl: timedelta = timedelta(hours=1),
        key: str | None = None,
        actor: Actor | str = APP,
        now: datetime | None = None,
    ) -> Reservation:
        """Set units aside for a long job; they count against the limit until committed or
        released, and are freed by the sweep if neither happens within ``ttl``."""
        owner, who, amount, key = (
            as_owner(owner),
            as_actor(actor),
            check_amount(amount),
            check_idempotency_key(key),
        )
        if not isinstance(ttl, timedelta) or not timedelta(0) < ttl <= MAX_TTL:
            raise InvalidInput("ttl", f"must be a timedelta between 0 and {MAX_TTL.days} days", ttl)
        with self._rt.transaction(owner.tenant, now) as tx:
            snapshot = self._snapshot(tx.uow, owner, tx.now)
            counter = self._counter(tx.uow, snapshot, metric)
            reservation = Reservation(
                self._rt.new_id(),
                owner,
                metric,
                amount,
                counter.period_start,
                tx.now,
                tx.now + ttl,
                key=key,
            )
            earlier = tx.uow.usage.add_reservation(reservation)
            if earlier is not None:
                return earlier
            self._count(tx, who, snapshot, counter, amount, reserve=True)
            return reservation

    def commit(
        self,
        owner: Owner,
        reservation_id: str,
        amount: int | None = None,
        *,
        actor: Actor | str = APP,
        now: datetime | None = None,
    ) -> UsageRecord:
        """Turn a held reservation into usage: all of it, or ``amount`` (at most what was
        held; the rest is freed). It counts in the period it was reserved in."""
        owner = as_owner(owner)
        with self._rt.transaction(owner.tenant, now) as tx:
            held = self._held(tx, owner, reservation_id)
            used = held.amount if amount is None else check_amount(amount, allow_zero=True)
            if used > held.amount:
                raise InvalidInput("amount", f"only {held.amount} units were reserved", amount)
            counted = tx.uow.usage.add(
                owner, held.metric, held.period_start, used=used, reserved=-held.amount
            )
            if counted is None:
                raise InvalidInput(
                    "reservation", f"reservation {held.id} no longer holds its units"
                )
            tx.uow.usage.update_reservation(
                attrs.evolve(
                    held, status=ReservationStatus.COMMITTED, committed=used, settled_at=tx.now
                )
            )
            record = UsageRecord(
                self._rt.new_id(), owner, held.metric, used, held.period_start, tx.now
            )
            if used:
                tx.uow.usage.add_record(record)
            tx.touch_usage(owner)
            return record

    def release(
        self,
        owner: Owner,
        reservation_id: str,
        *,
        actor: Actor | str = APP,
        now: datetime | None = None,
    ) -> Reservation:
        owner = as_owner(owner)
        with self._rt.transaction(owner.tenant, now) as tx:
            return self._free(tx, self._held(tx, owner, reservation_id), ReservationStatus.RELEASED)

    def _held(self, tx: Transaction, owner: Owner, reservation_id: str) -> Reservation:
        held = tx.uow.usage.reservation(owner, reservation_id)
        if held.status is not ReservationStatus.HELD:
            raise InvalidInput(
                "reservation", f"reservation {reservation_id} is already {held.status.value}"
            )
        return held

    def _free(self, tx: Transaction, held: Reservation, status: ReservationStatus) -> Reservation:
        tx.uow.usage.add(held.owner, held.metric, held.period_start, reserved=-held.amount)
        settled = attrs.evolve(held, status=status, settled_at=tx.now)
        tx.uow.usage.update_reservation(settled)
        tx.touch_usage(held.owner)
        return settled

    def expire_reservations(
        self, tenant: str | None, now: datetime, batch: int = 500
    ) -> list[Reservation]:
        """The sweep's part: free held reservations whose time ran out."""
        with self._rt.read(tenant) as uow:
            due = list(uow.usage.held_reservations_due(now, batch))
        expired = []
        for held in due:
            with self._rt.transaction(tenant, now) as tx:
                current = tx.uow.usage.reservation(held.owner, held.id)
                if current.status is ReservationStatus.HELD:
                    freed = self._free(tx, current, ReservationStatus.EXPIRED)
                    tx.record(
                        Actor.system("sweep"),
                        "usage.reservation_expired",
                        target(held.owner, held.metric),
                        owner=held.owner,
                        after=freed,
                        reason=f"not committed by {held.expires_at.isoformat()}",
                    )
                    expired.append(freed)
        return expired


def _summary(decision: UsageDecision) -> dict[str, object]:
    return {
        "metric": decision.metric,
        "limit": decision.limit,
        "used": decision.used,
        "reserved": decision.reserved,
        "requested": decision.requested,
        "enforcement": decision.enforcement.value,
    }
