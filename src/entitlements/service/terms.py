"""The terms a write enforces, and the one way usage is counted against them.

A write may start from the cached snapshot — it is only a guess: the store checks the
snapshot's terms revision in the same conditional UPDATE that counts, so a guess that
another process made stale is refused by the database. Refused, the write takes the
owner's terms lock, resolves again inside its transaction and tries once more; only
then is a refusal (or a denial by status) final. Reservations whose time ran out are
settled on that path with the very function the sweep uses, so they stop counting the
moment they expire, sweep or no sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import attrs

from entitlements.domain.actor import Actor
from entitlements.domain.owner import Owner
from entitlements.domain.resolution import Snapshot
from entitlements.domain.usage import (
    REFUSED_BY_TERMS,
    Charge,
    Counter,
    CounterAddition,
    Reservation,
    ReservationStatus,
    UsageDecision,
    charge,
    fallback_guard,
    usage_period_start,
)
from entitlements.errors import LimitExceeded, UsageDenied
from entitlements.ports import UnitOfWork
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.snapshots import load_snapshot

__all__ = [
    "count",
    "effective",
    "expire_held",
    "fallback_guard",
    "locked_terms",
    "prepare_locked",
    "record_over_limit",
    "refuse",
    "terms_for_write",
    "usage_target",
]

SWEEPER = Actor.system("sweep")


def usage_target(owner: Owner, metric: str) -> str:
    return f"usage:{owner}:{metric}"


def record_over_limit(
    tx: Transaction, who: Actor, result: UsageDecision, reason: str | None = None
) -> None:
    """Passing a soft limit (or a gauge's limit) is audited, and so heard by listeners."""
    tx.record(
        who,
        "usage.over_limit",
        usage_target(result.owner, result.metric),
        owner=result.owner,
        after={
            "metric": result.metric,
            "limit": result.limit,
            "used": result.used,
            "reserved": result.reserved,
            "requested": result.requested,
            "enforcement": result.enforcement.value,
        },
        reason=reason or f"{result.detail}; soft limit {result.limit} passed",
    )


def refuse(decision: UsageDecision) -> UsageDenied:
    if decision.limit is not None and decision.reason not in REFUSED_BY_TERMS:
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


def terms_for_write(rt: Runtime, tx: Transaction, owner: Owner) -> Snapshot:
    """The cached snapshot if it is valid at the write's time, else one resolved in the
    write's own transaction."""
    cached = rt.cache.snapshots.get(owner)
    if cached is not None and cached.valid_at(tx.now):
        return cached
    return load_snapshot(tx.uow, owner, tx.now, rt.policy)


def locked_terms(rt: Runtime, tx: Transaction, owner: Owner, guess: Snapshot) -> Snapshot:
    """The terms in force, with the owner's terms lock held until the write commits."""
    revision = tx.uow.revisions.lock(owner)
    if revision == guess.revision and guess.valid_at(tx.now):
        return guess
    return load_snapshot(tx.uow, owner, tx.now, rt.policy)


def effective(uow: UnitOfWork, counter: Counter, now: datetime) -> Counter:
    """The counter as it stands at ``now``: held reservations that ran out do not count,
    whether or not anything settled them yet."""
    if not counter.holds_expired(now):
        return counter
    expired = uow.usage.expired_held(counter.owner, counter.metric, counter.period_start, now)
    return attrs.evolve(counter, reserved=counter.reserved - sum(r.amount for r in expired))


def expire_held(
    tx: Transaction, reservations: Sequence[Reservation], *, reason: str | None = None
) -> list[Reservation]:
    """Settle held reservations whose time ran out: each at most once (the settle is
    conditional on the reservation still being held), freeing its units and auditing it."""
    expired = []
    touched: set[tuple[Owner, str, datetime]] = set()
    for held in reservations:
        settled = attrs.evolve(held, status=ReservationStatus.EXPIRED, settled_at=held.expires_at)
        if not tx.uow.usage.settle_reservation(settled):
            continue
        tx.uow.usage.add(
            CounterAddition(held.owner, held.metric, held.period_start, reserved=-held.amount)
        )
        touched.add((held.owner, held.metric, held.period_start))
        tx.touch_usage(held.owner)
        tx.record(
            SWEEPER,
            "usage.reservation_expired",
            usage_target(held.owner, held.metric),
            owner=held.owner,
            after=settled,
            reason=reason or f"not committed by {held.expires_at.isoformat()}",
        )
        expired.append(settled)
    for owner, metric, period in touched:
        tx.uow.usage.refresh_held_until(owner, metric, period)
    return expired


def count(
    rt: Runtime,
    tx: Transaction,
    owner: Owner,
    metric: str,
    amount: int,
    snapshot: Snapshot,
    *,
    hold_until: datetime | None = None,
    tried: bool = False,
) -> tuple[Snapshot, Counter, UsageDecision]:
    """Count ``amount`` more units (used, or reserved until ``hold_until``) against the
    terms in force; returns the terms it counted under, the counter after, and the
    decision before. Raises `LimitExceeded` / `UsageDenied` only on terms read under the
    owner's lock. ``tried``: the caller's own conditional count with ``snapshot`` was
    refused already, so this starts under the lock."""
    uow = tx.uow
    locked = False
    if tried:
        snapshot, locked = prepare_locked(rt, tx, owner, metric, snapshot), True
    while True:
        wanted = charge(snapshot, metric, amount)
        counter = None if wanted.denied else _count(tx, wanted, hold_until)
        if counter is not None:
            return snapshot, counter, wanted.before
        if locked:
            period = wanted.terms.period_start
            current = effective(uow, uow.usage.counter(owner, metric, period), tx.now)
            raise refuse(wanted.against(current))
        locked = True
        snapshot = prepare_locked(rt, tx, owner, metric, snapshot)


def _count(tx: Transaction, wanted: Charge, hold_until: datetime | None) -> Counter | None:
    """The conditional count of one charge (used, or reserved until ``hold_until``)."""
    terms = wanted.terms
    delta = {"reserved": wanted.amount} if hold_until is not None else {"used": wanted.amount}
    return tx.uow.usage.add(
        CounterAddition(
            terms.snapshot.owner,
            terms.metric,
            terms.period_start,
            ceiling=terms.ceiling,
            revision=terms.snapshot.revision,
            now=tx.now,
            fallback=terms.guard,
            hold_until=hold_until,
            **delta,
        )
    )


def prepare_locked(
    rt: Runtime, tx: Transaction, owner: Owner, metric: str, guess: Snapshot
) -> Snapshot:
    """The terms in force under the owner's lock, with the counter of their period
    present, stamped with their revision and rid of held reservations that ran out:
    a conditional count under them fails only on the limit itself."""
    snapshot = locked_terms(rt, tx, owner, guess)
    period = usage_period_start(snapshot, snapshot.limit_definition(metric))
    expire_held(tx, tx.uow.usage.expired_held(owner, metric, period, tx.now))
    tx.uow.usage.ensure(owner, metric, period, snapshot.revision)
    return snapshot
