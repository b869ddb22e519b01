"""Batch ingestion: many usage events in one transaction, with the outcomes consuming
them one by one would have had.

The counters a batch touches are read once, locked, together with the terms revision
each is stamped with; an owner whose counters are missing or carry another revision
than the terms at hand (another process changed them), or hold reservations that ran
out, is handled as a single call's refused guess is: under the owner's terms lock,
with its terms read again from the database. The events are then decided in order
against those locked counters, in memory, and written with one insert of the accepted
ledger rows and one conditional UPDATE per counter — which checks the revision and the
ceiling once more, so the database, not this process, has the last word.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from entitlements.domain.actor import Actor
from entitlements.domain.ingestion import UsageEvent, UsageOutcome, UsageResult
from entitlements.domain.owner import Owner, as_owner, owner_key
from entitlements.domain.resolution import Snapshot
from entitlements.domain.usage import (
    Charge,
    Counter,
    CounterAddition,
    MetricTerms,
    UsageRecord,
    charged,
    check_amount,
    check_idempotency_key,
    fallback_guard,
    metric_terms,
)
from entitlements.errors import Conflict, InvalidInput
from entitlements.service.notifications import notify_usage
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.snapshots import load_snapshot
from entitlements.service.terms import effective, expire_held, record_over_limit, refuse

__all__ = ["ingest"]

Group = tuple[Owner, str, datetime]


class _Planned(NamedTuple):
    event: UsageEvent
    owner: Owner
    charge: Charge
    at: datetime
    group: Group
    key: str | None
    """The charge's key, and below its terms' snapshot, at hand: read many times."""
    snapshot: Snapshot


class _Written(NamedTuple):
    """What a batch's accepted events add up to, per counter."""

    records: list[UsageRecord]
    totals: dict[Group, int]
    ceilings: dict[Group, int | None]
    latest: dict[Group, datetime]


def _checked(rt: Runtime, index: int, event: object) -> tuple[UsageEvent, datetime | None]:
    if not isinstance(event, UsageEvent):
        raise InvalidInput(
            f"events[{index}]", f"must be a UsageEvent, got {type(event).__name__}", event
        )
    as_owner(event.owner)
    if not isinstance(event.metric, str) or not event.metric:
        raise InvalidInput(f"events[{index}].metric", "must name a metric", event.metric)
    check_amount(event.amount, f"events[{index}].amount")
    try:
        check_idempotency_key(event.key)
    except InvalidInput as bad:
        raise InvalidInput(f"events[{index}].key", str(bad).split(": ", 1)[1], event.key) from None
    at = None if event.at is None else rt.now(event.at)
    return event, at


def ingest(rt: Runtime, events: Sequence[object], who: Actor) -> list[UsageResult]:
    checked = [_checked(rt, i, e) for i, e in enumerate(events)]
    if not checked:
        return []
    tenant = checked[0][0].owner.tenant
    for i, (event, _) in enumerate(checked):
        if event.owner.tenant != tenant:
            raise InvalidInput(
                f"events[{i}].owner",
                f"one batch is one tenant's ({tenant!r}); {event.owner} belongs to "
                f"{event.owner.tenant!r}",
                event.owner,
            )
    keep = not rt.in_atomic_block
    generation = rt.cache.generation
    with rt.transaction(tenant) as tx:
        return _Batch(rt, tx, who, keep, generation).run(checked)


class _Batch:
    def __init__(
        self, rt: Runtime, tx: Transaction, who: Actor, keep: bool, generation: int
    ) -> None:
        self.rt, self.tx, self.who = rt, tx, who
        self.keep, self.generation = keep, generation
        self.terms: dict[Owner, Snapshot] = {}
        self.lanes: dict[tuple[Owner, str], MetricTerms] = {}
        self.relocked: set[Owner] = set()

    def _terms(self, owner: Owner, at: datetime) -> Snapshot:
        snapshot = self.terms.get(owner)
        if snapshot is not None and snapshot.valid_at(at):
            return snapshot
        if owner not in self.relocked:
            snapshot = self.rt.cache.snapshots.get(owner)
        if snapshot is None or not snapshot.valid_at(at) or owner in self.relocked:
            snapshot = load_snapshot(self.tx.uow, owner, at, self.rt.policy)
            if self.keep and owner not in self.relocked:
                self.rt.cache.put(snapshot, self.generation)
        self.terms[owner] = snapshot
        return snapshot

    def _plan(self, event: UsageEvent, at: datetime | None) -> _Planned:
        owner = event.owner
        when = self.tx.now if at is None else at
        snapshot = self._terms(owner, when)
        lane = self.lanes.get((owner, event.metric))
        if lane is None or lane.snapshot is not snapshot:
            lane = self.lanes[(owner, event.metric)] = metric_terms(snapshot, event.metric)
        planned = Charge(lane, event.amount, event.key)
        if lane.counts_seats:
            planned.refuse_seats()
        group = (owner, event.metric, lane.period_start)
        return _Planned(event, owner, planned, when, group, event.key, snapshot)

    def _stale(
        self,
        planned: Sequence[_Planned],
        found: dict[Group, tuple[Counter, int]],
        existing: Mapping[tuple[Owner, str], UsageRecord],
    ) -> set[Owner]:
        """Owners whose counting needs the terms lock, as a single call's would: a
        retry of a recorded event counts nothing and needs no lock."""
        stale: set[Owner] = set()
        fallback_checked: set[Owner] = set()
        for p in planned:
            if p.owner in stale or _retried(p, existing):
                continue
            guarded = p.owner not in fallback_checked
            fallback_checked.add(p.owner)
            stored = found.get(p.group)
            if (
                stored is None
                or stored[1] != p.snapshot.revision
                or stored[0].holds_expired(p.at)
                or (guarded and not self._fallback_current(p.snapshot))
            ):
                stale.add(p.owner)
        return stale

    def _fallback_current(self, snapshot: Snapshot) -> bool:
        guard = fallback_guard(snapshot)
        if guard is None:
            return True
        head = self.tx.uow.plans.find(guard[0])
        return head is not None and head.version == guard[1]

    def _relock(
        self,
        owners: set[Owner],
        checked: Sequence[tuple[UsageEvent, datetime | None]],
        existing: Mapping[tuple[Owner, str], UsageRecord],
    ) -> list[_Planned]:
        """Take the terms lock of ``owners``, read their terms again, settle their
        expired reservations and make sure their counters exist, stamped."""
        uow = self.tx.uow
        for owner in sorted(owners, key=owner_key):
            uow.revisions.lock(owner)
            self.relocked.add(owner)
            self.terms.pop(owner, None)
        replanned = [self._plan(e, at) for e, at in checked if e.owner in owners]
        latest: dict[Group, datetime] = {}
        for p in replanned:
            if not _retried(p, existing):
                latest[p.group] = max(p.at, latest.get(p.group, p.at))
        for (owner, metric, period), at in latest.items():
            expire_held(self.tx, uow.usage.expired_held(owner, metric, period, at))
            uow.usage.ensure(owner, metric, period, self.terms[owner].revision)
        return replanned

    def run(self, checked: Sequence[tuple[UsageEvent, datetime | None]]) -> list[UsageResult]:
        uow = self.tx.uow
        planned = [self._plan(e, at) for e, at in checked]
        keyed = list({(p.owner, p.key) for p in planned if p.key is not None})
        existing: Mapping[tuple[Owner, str], UsageRecord] = (
            uow.usage.recorded(keyed) if keyed else {}
        )
        found = dict(uow.usage.counters_of(list({p.group for p in planned}), lock=True))
        stale = self._stale(planned, found, existing)
        if stale:
            planned = self._replan(stale, planned, checked, existing, found)
        counters = {group: self._effective(c) for group, (c, _) in found.items()}
        return self._decide_and_write(planned, existing, counters)

    def _replan(
        self,
        stale: set[Owner],
        planned: Sequence[_Planned],
        checked: Sequence[tuple[UsageEvent, datetime | None]],
        existing: Mapping[tuple[Owner, str], UsageRecord],
        found: dict[Group, tuple[Counter, int]],
    ) -> list[_Planned]:
        """Plan the stale owners' events again under their terms lock, and read the
        counters they now count in (locked)."""
        replanned = iter(self._relock(stale, checked, existing))
        again = [next(replanned) if p.owner in stale else p for p in planned]
        groups = list({p.group for p in again if p.owner in stale and not _retried(p, existing)})
        found.update(self.tx.uow.usage.counters_of(groups, lock=True))
        return again

    def _effective(self, counter: Counter) -> Counter:
        return effective(self.tx.uow, counter, self.tx.now)

    def _decide_and_write(
        self,
        planned: Sequence[_Planned],
        existing: Mapping[tuple[Owner, str], UsageRecord],
        counters: dict[Group, Counter],
    ) -> list[UsageResult]:
        """Decide the events in order against the locked counters, then write the
        accepted ones: one insert of ledger rows, one conditional count per counter."""
        results: list[UsageResult] = []
        accepted: dict[tuple[Owner, str], UsageRecord] = {}
        written = _Written([], {}, {}, {})
        for p in planned:
            earlier = None
            if p.key is not None:
                earlier = accepted.get((p.owner, p.key)) or existing.get((p.owner, p.key))
            if earlier is not None:
                results.append(self._duplicate(p, earlier, counters))
                continue
            result = self._decide(p, counters, written)
            if p.key is not None and result.outcome is UsageOutcome.ACCEPTED:
                accepted[(p.owner, p.key)] = written.records[-1]
            results.append(result)
        self._write(written)
        return results

    def _decide(
        self, p: _Planned, counters: dict[Group, Counter], written: _Written
    ) -> UsageResult:
        """One event against its counter as the earlier events of the batch left it."""
        group, amount = p.group, p.charge.amount
        counter = counters.get(group) or Counter(*group)
        before = p.charge.against(counter)
        if not before.allowed:
            return UsageResult(p.event, UsageOutcome.REFUSED, before, refuse(before))
        owner, metric, period = group
        record = UsageRecord(self.rt.new_id(), owner, metric, amount, period, p.at, p.key)
        written.records.append(record)
        after = Counter(
            owner, metric, period, counter.used + amount, counter.reserved, counter.held_until
        )
        counters[group] = after
        written.totals[group] = written.totals.get(group, 0) + amount
        written.latest[group] = max(p.at, written.latest.get(group, p.at))
        ceiling = p.charge.terms.ceiling
        if written.ceilings.get(group, ceiling) != ceiling:
            ceiling = None  # terms moved with time inside the batch: decided above
        written.ceilings[group] = ceiling
        result = charged(p.charge, after)
        if result.over_limit:
            record_over_limit(self.tx, self.who, result)
        thresholds = p.charge.terms.thresholds
        if thresholds is not None:
            total = counter.used + counter.reserved
            if thresholds.crosses(total, total + amount):
                notify_usage(self.tx, owner, thresholds, total, total + amount)
        return UsageResult(p.event, UsageOutcome.ACCEPTED, result)

    def _write(self, written: _Written) -> None:
        uow = self.tx.uow
        uow.usage.add_records(written.records)
        additions = [
            CounterAddition(
                group[0],
                group[1],
                group[2],
                written.totals[group],
                ceiling=written.ceilings[group],
                revision=self.terms[group[0]].revision,
                now=written.latest[group],
                fallback=fallback_guard(self.terms[group[0]]),
            )
            for group in sorted(written.totals, key=_order)
        ]
        if not uow.usage.add_counted_many(additions):
            raise Conflict(
                "the terms of an owner in this batch changed while it was recorded; retry it"
            )
        touched = {a.owner for a in additions}
        if touched:
            self.tx.usage_touched.update(touched)
            self.rt.cache.invalidate_usage(touched)

    def _duplicate(
        self, p: _Planned, earlier: UsageRecord, counters: dict[Group, Counter]
    ) -> UsageResult:
        reused = p.charge.reused_by(earlier)
        if reused is not None:
            counter = counters.get(p.group) or Counter(*p.group)
            return UsageResult(p.event, UsageOutcome.REFUSED, p.charge.against(counter), reused)
        group = (earlier.owner, earlier.metric, earlier.period_start)
        counter = counters.get(group) or self._effective(self.tx.uow.usage.counter(*group))
        counters[group] = counter
        return UsageResult(p.event, UsageOutcome.DUPLICATE, charged(p.charge, counter, earlier))


def _retried(p: _Planned, existing: Mapping[tuple[Owner, str], UsageRecord]) -> bool:
    """The event's key was recorded before the batch: it counts nothing."""
    return p.key is not None and (p.owner, p.key) in existing


def _order(group: Group) -> tuple[Any, ...]:
    owner, metric, period = group
    return (owner.kind, owner.id, metric, period)
