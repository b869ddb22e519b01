"""Use cases for usage against limits: check (no side effect), consume (check and record
atomically, idempotent by key), gauges, reservations for long jobs, totals and history.

A warm ``check`` reads the owner's cached snapshot and a memoised decision: no I/O. A
write never trusts the cache: it counts with a conditional UPDATE that carries the terms
revision it resolved at (`entitlements.service.terms.count`), so the database refuses a
write whose terms another process changed. Consumption is not written to the audit
trail — the usage ledger is its own record — except when a soft limit is passed, which
is audited (and so heard by listeners) as ``usage.over_limit``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

import attrs

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.alerts import Thresholds
from entitlements.domain.checks import check_id, check_key, check_many
from entitlements.domain.ingestion import UsageEvent, UsageResult
from entitlements.domain.instant import optional_given_utc
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.page import DEFAULT_LIMIT, Page, check_limit, instant_cursor, page_of
from entitlements.domain.plan import LimitKind
from entitlements.domain.resolution import Snapshot
from entitlements.domain.usage import (
    MAX_AMOUNT,
    MAX_KEY,
    Charge,
    Consumption,
    Counter,
    CounterAddition,
    MetricTerms,
    Reservation,
    ReservationStatus,
    UsageDecision,
    UsageRecord,
    charge,
    charged,
    check_amount,
    check_idempotency_key,
    decide,
    metric_terms,
    slot_setters,
    usage_period_start,
)
from entitlements.errors import InvalidInput
from entitlements.ports import InlineConsumption, UnitOfWork
from entitlements.service.ingestion import ingest
from entitlements.service.notifications import notify_usage
from entitlements.service.requests import claim_key
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.snapshots import load_snapshot
from entitlements.service.terms import (
    count,
    effective,
    expire_held,
    locked_terms,
    record_over_limit,
    refuse,
    terms_for_write,
    usage_target,
)

__all__ = ["Usage", "refuse", "target"]


def check_metric(value: object) -> str:
    return check_key(value, "metric")


def check_reservation_id(value: object) -> str:
    return check_id(value, "reservation_id", max_length=64)


APP = Actor.system("app")
MAX_TTL = timedelta(days=31)
_wall = time.time

target = usage_target


class Usage:
    """``ents.usage``: metered consumption, gauges and reservations, enforced by the
    database at write time."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._coherence = runtime.coherence
        store = runtime.store
        # the store's fast path for a plain consumption, when it offers one
        self._inline = store if isinstance(store, InlineConsumption) else None
        self._metrics: set[str] = set()
        self._wall_clock = runtime.cache.wall_clock
        self._cache = runtime.cache
        self._clock = runtime.warm_clock

    # -- reading -----------------------------------------------------------------------

    def check(self, owner: Owner, metric: str, amount: int = 1) -> UsageDecision:
        """May ``owner`` use ``amount`` more of ``metric`` now? No side effect. Warm, it is
        a few dict lookups: decisions are kept until the owner's usage or entitlements
        change (here or, through the change feed, in another process) or time moves past
        the snapshot's validity."""
        cache, clock = self._cache, self._clock  # locals: calling an attribute is slower
        try:
            if owner in cache.snapshots and cache.lo <= clock() < cache.hi and type(amount) is int:
                memo = cache.decisions.get(owner)
                if memo is not None:
                    known = memo.get((metric, amount))
                    if known is not None:
                        return known
        except TypeError:  # unhashable arguments: refused just below
            pass
        return self._check_slow(as_owner(owner), check_metric(metric), check_amount(amount))

    def _check_slow(self, owner: Owner, metric: str, amount: int) -> UsageDecision:
        rt = self._rt
        self._coherence.ensure_fresh()
        at = rt.now()
        rt.cache.settle(rt.timestamp())
        generations = rt.cache.generation, rt.cache.usage_generation
        snapshot, counter = self._cached(owner, metric, at)
        if snapshot is None or counter is None:
            snapshot, counter = self._read(owner, metric, at, snapshot, generations)
        decision = decide(snapshot, metric, counter, amount)
        if counter.held_until is None and not rt.in_atomic_block:
            rt.cache.put_decision(decision, generations[1], snapshot)
        return decision

    def _cached(
        self, owner: Owner, metric: str, at: datetime
    ) -> tuple[Snapshot | None, Counter | None]:
        """The cached snapshot valid at ``at`` and the cached counter it counts in, each
        ``None`` where the cache cannot answer."""
        cache = self._rt.cache
        snapshot = cache.snapshots.get(owner)
        if snapshot is None or not snapshot.valid_at(at):
            return None, None
        period = usage_period_start(snapshot, snapshot.limit_definition(metric))
        counter = cache.counters.get(owner, {}).get((metric, period))
        if counter is None or counter.holds_expired(at):
            return snapshot, None
        return snapshot, counter

    def _read(
        self,
        owner: Owner,
        metric: str,
        at: datetime,
        snapshot: Snapshot | None,
        generations: tuple[int, int],
    ) -> tuple[Snapshot, Counter]:
        """The terms (unless given) and the counter read from the store, kept for the
        next check outside atomic blocks (under the cache's terms and usage generations
        read before)."""
        rt = self._rt
        with rt.read(owner.tenant) as uow:
            if snapshot is None:
                snapshot = load_snapshot(uow, owner, at, rt.policy)
            counter = self._counter(uow, snapshot, metric, at)
        if not rt.in_atomic_block:
            rt.cache.put(snapshot, generations[0])
            if not counter.holds_expired(at):
                rt.cache.put_counter(counter, generations[1])
        return snapshot, counter

    def _counter(self, uow: UnitOfWork, snapshot: Snapshot, metric: str, at: datetime) -> Counter:
        period = usage_period_start(snapshot, snapshot.limit_definition(metric))
        return effective(uow, uow.usage.counter(snapshot.owner, metric, period), at)

    def total(self, owner: Owner, metric: str, period_start: datetime | None = None) -> int:
        """Units used in a period (default: the current one)."""
        return self.counter(owner, metric, period_start).used

    def counter(self, owner: Owner, metric: str, period_start: datetime | None = None) -> Counter:
        """The counter of a period (default: the one ``metric`` counts in now); held
        reservations that ran out are not counted in ``reserved``."""
        owner, metric = as_owner(owner), check_metric(metric)
        period_start = optional_given_utc(period_start, "period_start")
        at = self._rt.now()
        with self._rt.read(owner.tenant) as uow:
            if period_start is None:
                return self._counter(
                    uow, load_snapshot(uow, owner, at, self._rt.policy), metric, at
                )
            return effective(uow, uow.usage.counter(owner, metric, period_start), at)

    def history(
        self, owner: Owner, metric: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Page[Counter]:
        """Each period's counter, oldest first, a page at a time (past periods are kept,
        not overwritten): pass the page's ``next`` as ``cursor`` for the page after it."""
        owner, metric = as_owner(owner), check_metric(metric)
        limit = check_limit(limit)
        after = instant_cursor(cursor, "usage-history")
        since = None if after is None else after[0]
        with self._rt.read(owner.tenant) as uow:
            found = uow.usage.counters_page(owner, metric, since, limit + 1)
        return page_of([((c.period_start.isoformat(),), c) for c in found], limit, "usage-history")

    def records(
        self, owner: Owner, metric: str, period_start: datetime | None = None
    ) -> Sequence[UsageRecord]:
        """The accepted consumptions of ``metric`` in a period (default: the current one),
        for invoices and disputes."""
        owner, metric = as_owner(owner), check_metric(metric)
        period_start = optional_given_utc(period_start, "period_start")
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
        request counts once (the decision comes back with ``duplicate=True``); the same
        key with another metric or amount raises `IdempotencyKeyReused`. A hard limit
        raises `LimitExceeded` and records nothing; a soft one records, reports
        ``over_limit`` and audits it."""
        if (
            now is None
            and self._inline is not None
            and _plain(owner, metric, amount, self._metrics)
            and self._rt.telemetry is None
        ):
            # the arguments an in-process store counts with, checked the cheap way (a
            # metric seen valid before stays valid); anything else is checked in full below
            if actor is not APP:
                as_actor(actor)
            if key is not None:
                key = _plain_key(key)
            done = self._consume_inline(owner, metric, amount, key)
            if done is not None:
                return done
        return self._consume(owner, metric, amount, key, actor, now)

    @retries_lost_races
    def _consume(
        self,
        owner: Owner,
        metric: str,
        amount: int,
        key: str | None,
        actor: Actor | str,
        now: datetime | None,
    ) -> UsageDecision:
        owner, who, amount, key = (
            as_owner(owner),
            as_actor(actor),
            check_amount(amount),
            check_idempotency_key(key),
        )
        metric = check_metric(metric)
        if self._inline is not None:
            done = self._inline_after_checks(owner, metric, amount, key, now)
            if done is not None:
                return done
        rt = self._rt
        keep = None if rt.in_atomic_block else rt.cache.generation
        with rt.transaction(owner.tenant, now) as tx:
            wanted = charge(self._terms(tx, owner, keep), metric, amount, key)
            wanted.refuse_seats()
            terms = wanted.terms
            record = UsageRecord(
                rt.new_id(), owner, metric, amount, terms.period_start, tx.now, key
            )
            if not wanted.denied:
                counter, earlier = tx.uow.usage.consume(
                    Consumption(
                        record,
                        ceiling=terms.ceiling,
                        revision=terms.snapshot.revision,
                        now=tx.now,
                        fallback=terms.guard,
                    )
                )
                if earlier is not None:
                    return self._duplicate(tx, wanted, earlier, counter)
                if counter is not None:
                    return self._counted(tx, who, wanted, counter)
            return self._consume_locked(tx, who, wanted, record)

    def _inline_after_checks(
        self, owner: Owner, metric: str, amount: int, key: str | None, now: datetime | None
    ) -> UsageDecision | None:
        """Arguments checked in full: the metric is known valid from now on, and the
        in-process store may count it inline."""
        if len(self._metrics) < 10_000:
            self._metrics.add(metric)
        if now is None and self._rt.telemetry is None:
            return self._consume_inline(owner, metric, amount, key)
        return None

    def _terms(self, tx: Transaction, owner: Owner, keep: int | None) -> Snapshot:
        """The terms a consumption starts from: the cached snapshot valid at the write's
        time, else one resolved in the write's transaction — from committed rows, so kept
        as a read's would be, under the cache generation ``keep`` (``None``: in an atomic
        block, not kept)."""
        snapshot = self._rt.cache.snapshots.get(owner)
        if snapshot is None or not snapshot.valid_at(tx.now):
            snapshot = load_snapshot(tx.uow, owner, tx.now, self._rt.policy)
            if keep is not None:
                self._rt.cache.put(snapshot, keep)
        return snapshot

    def _consume_inline(
        self, owner: Owner, metric: str, amount: int, key: str | None
    ) -> UsageDecision | None:
        """An in-process store counts a plain consumption — terms known and cached, no
        soft limit to audit, nothing refused — as one call into the store. ``None``:
        take the ordinary path (it decides anything else)."""
        lane = self._lane(owner, metric)
        if lane is None:
            return None
        rt = self._rt
        wall = self._wall_clock
        at = _system_now(UTC) if wall else rt.now()
        # a ledger record of values checked already: the slots are filled directly,
        # skipping the converters (and the frozen class's refusing ``__setattr__``)
        record = _new_record(UsageRecord)
        _set_record_id(record, rt.new_id())
        _set_record_owner(record, owner)
        _set_record_metric(record, metric)
        _set_record_amount(record, amount)
        _set_record_period(record, lane.period_start)
        _set_record_at(record, at)
        _set_record_key(record, key)
        asked = Consumption(record, lane.ceiling, lane.snapshot.revision, at, lane.guard)
        counter, _, seq = cast(InlineConsumption, self._inline).consume_inline(
            asked, at if wall else None
        )
        if counter is None:
            return None
        rt.note_revision(seq)
        rt.cache.invalidate_usage_of(owner)
        thresholds = lane.thresholds
        if thresholds is not None:
            total = counter.used + counter.reserved
            if thresholds.crosses(total - amount, total):
                self._crossed_inline(lane.snapshot.owner, thresholds, total - amount, total)
        base = lane.base
        used, reserved, limit = counter.used, counter.reserved, base.limit
        # the lane's base decision with the counter's numbers, built as the tuple it is
        return _new_decision(
            UsageDecision,
            (
                owner,
                metric,
                True,
                amount,
                limit,
                used,
                reserved,
                None if limit is None else max(limit - used - reserved, 0),
                base.enforcement,
                base.kind,
                base.reason,
                base.detail,
                lane.period_start,
                False,
                False,
            ),
        )

    def _crossed_inline(
        self, owner: Owner, thresholds: Thresholds, before: int, after: int
    ) -> None:
        """A count on the in-process fast path may have crossed a threshold: the
        notification is written right after, in a unit of work of its own (the
        in-process store has no crash to survive between the two)."""
        with self._rt.transaction(owner.tenant) as tx:
            notify_usage(tx, owner, thresholds, before, after)

    def _lane(self, owner: Owner, metric: str) -> MetricTerms | None:
        """How ``metric`` is charged under the owner's cached snapshot, valid now, if a
        charge of it is plain; kept beside the snapshot (and dropped with it)."""
        rt = self._rt
        if rt._ambient.get() is not None:  # in an atomic block
            return None
        snapshot = rt.cache.snapshots.get(owner)
        if snapshot is None or not snapshot.resolved_ts <= rt.timestamp() < snapshot.expires_ts:
            return None
        lanes = rt.cache.lanes.get(owner)
        lane = None if lanes is None else lanes.get(metric)
        if lane is None or lane.snapshot is not snapshot:
            lane = metric_terms(snapshot, metric)
            rt.cache.put_lane(lane)
        return lane if lane.plain else None

    def _consume_locked(
        self, tx: Transaction, who: Actor, wanted: Charge, record: UsageRecord
    ) -> UsageDecision:
        """The counter refused the guess (stale or missing terms, a held reservation run
        out, a hard limit): decide again under the owner's terms lock."""
        owner, metric = record.owner, record.metric
        earlier = tx.uow.usage.add_record(record)
        if earlier is not None:
            return self._duplicate(tx, wanted, earlier)
        counted_under, after, _ = count(
            self._rt, tx, owner, metric, record.amount, wanted.terms.snapshot, tried=True
        )
        if counted_under is not wanted.terms.snapshot:
            wanted = charge(counted_under, metric, record.amount, record.key)
        period_now = wanted.terms.period_start
        if period_now != record.period_start:  # the terms in force count in another period
            tx.uow.usage.remove_record(owner, record.id)
            tx.uow.usage.add_record(attrs.evolve(record, period_start=period_now))
        return self._counted(tx, who, wanted, after)

    @retries_lost_races
    def consume_many(
        self,
        events: Iterable[UsageEvent],
        *,
        actor: Actor | str = APP,
    ) -> list[UsageResult]:
        """Record many events (any owners of one tenant) in one transaction: one bulk
        insert of ledger rows, one conditional update per counter. Each event gets the
        outcome consuming the events one by one, in order, would have given it —
        accepted, duplicate (its key was recorded already) or refused (``error`` is the
        exception `consume` would have raised) — and a refused event costs the others
        nothing. Malformed events raise `InvalidInput` before anything is written."""
        return ingest(self._rt, check_many(events, "events", "UsageEvent values"), as_actor(actor))

    def _duplicate(
        self,
        tx: Transaction,
        wanted: Charge,
        earlier: UsageRecord,
        counter: Counter | None = None,
    ) -> UsageDecision:
        """The key was recorded already: a retry answers from the counter the first
        request counted in; the key given for another charge is refused first."""
        reused = wanted.reused_by(earlier)
        if reused is not None:
            raise reused
        if counter is None or counter.period_start != earlier.period_start:
            counter = tx.uow.usage.counter(earlier.owner, earlier.metric, earlier.period_start)
        return charged(wanted, effective(tx.uow, counter, tx.now), earlier)

    def _counted(
        self, tx: Transaction, who: Actor, wanted: Charge, after: Counter
    ) -> UsageDecision:
        owner = wanted.terms.snapshot.owner
        tx.touch_usage(owner)
        result = charged(wanted, after)
        if result.over_limit:
            record_over_limit(tx, who, result)
        if wanted.terms.thresholds is not None:
            total = after.used + after.reserved
            notify_usage(tx, owner, wanted.terms.thresholds, total - wanted.amount, total)
        return result

    @retries_lost_races
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
        metric = check_metric(metric)
        rt = self._rt
        with rt.transaction(owner.tenant, now) as tx:
            snapshot = terms_for_write(rt, tx, owner)
            definition = snapshot.limit_definition(metric)
            if definition is not None and definition.kind is not LimitKind.GAUGE:
                raise InvalidInput(
                    "metric", f"{metric} is a {definition.kind.value} limit, not a gauge", metric
                )
            period = usage_period_start(snapshot, definition)
            alerting = definition is not None and bool(definition.alerts)
            before = tx.uow.usage.counter(owner, metric, period) if alerting else None
            after = tx.uow.usage.set_used(owner, metric, period, amount, revision=snapshot.revision)
            if after is None:  # stale terms or no counter yet: decide under the lock
                snapshot = locked_terms(rt, tx, owner, snapshot)
                tx.uow.usage.ensure(owner, metric, period, snapshot.revision)
                after = tx.uow.usage.set_used(owner, metric, period, amount)
                assert after is not None
            tx.touch_usage(owner)
            wanted = charge(snapshot, metric, 0)
            result = charged(wanted, after)
            if result.over_limit:
                record_over_limit(tx, who, result, f"gauge set to {amount}, limit {result.limit}")
            if before is not None:
                notify_usage(
                    tx,
                    owner,
                    wanted.terms.thresholds,
                    before.used + before.reserved,
                    after.used + after.reserved,
                )
            return result

    @retries_lost_races
    def decrease(
        self,
        owner: Owner,
        metric: str,
        amount: int = 1,
        *,
        key: str | None = None,
        actor: Actor | str = APP,
        now: datetime | None = None,
    ) -> UsageDecision:
        """A gauge goes down (a project was deleted); never below zero. With ``key``, a
        repeat of the same request subtracts nothing more: it gets the gauge as it stands
        with ``duplicate=True`` (the key given with another metric or amount raises
        `IdempotencyKeyReused`)."""
        owner, amount, key = as_owner(owner), check_amount(amount), check_idempotency_key(key)
        metric = check_metric(metric)
        as_actor(actor)
        rt = self._rt
        with rt.transaction(owner.tenant, now) as tx:
            snapshot = terms_for_write(rt, tx, owner)
            period = usage_period_start(snapshot, snapshot.limit_definition(metric))
            asked = {"metric": metric, "amount": amount}
            earlier = claim_key(
                tx, owner, key, "usage.decrease", asked, {"period_start": period.isoformat()}
            )
            if earlier is not None:
                at = datetime.fromisoformat(str(earlier.outcome["period_start"]))
                counter = effective(tx.uow, tx.uow.usage.counter(owner, metric, at), tx.now)
                return decide(snapshot, metric, counter, 0)._replace(duplicate=True)
            after = tx.uow.usage.add(CounterAddition(owner, metric, period, used=-amount))
            if after is None:
                current = tx.uow.usage.counter(owner, metric, period)
                raise InvalidInput(
                    "amount",
                    f"{metric} is at {current.used}; it cannot go down by {amount}",
                    amount,
                )
            tx.touch_usage(owner)
            return decide(snapshot, metric, after, 0)

    # -- reservations ----------------------------------------------------------------

    @retries_lost_races
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
        released, and stop counting when ``ttl`` runs out (the sweep then records that).
        With ``key``, a retried request gets the reservation made the first time; the key
        given with another metric or amount raises `IdempotencyKeyReused`."""
        owner, amount, key = as_owner(owner), check_amount(amount), check_idempotency_key(key)
        metric = check_metric(metric)
        as_actor(actor)
        if not isinstance(ttl, timedelta) or not timedelta(0) < ttl <= MAX_TTL:
            raise InvalidInput("ttl", f"must be a timedelta between 0 and {MAX_TTL.days} days", ttl)
        rt = self._rt
        with rt.transaction(owner.tenant, now) as tx:
            snapshot = terms_for_write(rt, tx, owner)
            wanted = charge(snapshot, metric, amount, key)
            wanted.refuse_seats()
            period = wanted.terms.period_start
            reservation = Reservation(
                rt.new_id(), owner, metric, amount, period, tx.now, tx.now + ttl, key=key
            )
            earlier = tx.uow.usage.add_reservation(reservation)
            if earlier is not None:
                reused = wanted.reused_by(earlier, "a reservation of ")
                if reused is not None:
                    raise reused
                return earlier
            counted_under, after, _ = count(
                rt, tx, owner, metric, amount, snapshot, hold_until=reservation.expires_at
            )
            thresholds = charge(counted_under, metric, amount).terms.thresholds
            if thresholds is not None:
                total = after.used + after.reserved
                notify_usage(tx, owner, thresholds, total - amount, total)
            period_now = usage_period_start(counted_under, counted_under.limit_definition(metric))
            if period_now != period:
                raise InvalidInput(
                    "reservation", "the billing period changed while reserving; retry", metric
                )
            tx.touch_usage(owner)
            return reservation

    @retries_lost_races
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
        held; the rest is freed). It counts in the period it was reserved in. A
        reservation settles exactly once: a second commit (or one after a release or
        expiry) is refused."""
        owner, reservation_id = as_owner(owner), check_reservation_id(reservation_id)
        if amount is not None:
            amount = check_amount(amount, allow_zero=True)
        as_actor(actor)
        with self._rt.transaction(owner.tenant, now) as tx:
            held = self._held(tx, owner, reservation_id)
            used = held.amount if amount is None else amount
            if used > held.amount:
                raise InvalidInput("amount", f"only {held.amount} units were reserved", amount)
            self._settle(
                tx,
                attrs.evolve(
                    held, status=ReservationStatus.COMMITTED, committed=used, settled_at=tx.now
                ),
            )
            tx.uow.usage.add(
                CounterAddition(
                    owner, held.metric, held.period_start, used=used, reserved=-held.amount
                )
            )
            tx.uow.usage.refresh_held_until(owner, held.metric, held.period_start)
            record = UsageRecord(
                self._rt.new_id(), owner, held.metric, used, held.period_start, tx.now
            )
            if used:
                tx.uow.usage.add_record(record)
            tx.touch_usage(owner)
            return record

    @retries_lost_races
    def release(
        self,
        owner: Owner,
        reservation_id: str,
        *,
        actor: Actor | str = APP,
        now: datetime | None = None,
    ) -> Reservation:
        """Give the units back; exactly once, like `commit`."""
        owner, reservation_id = as_owner(owner), check_reservation_id(reservation_id)
        as_actor(actor)
        with self._rt.transaction(owner.tenant, now) as tx:
            held = self._held(tx, owner, reservation_id)
            released = attrs.evolve(held, status=ReservationStatus.RELEASED, settled_at=tx.now)
            self._settle(tx, released)
            tx.uow.usage.add(
                CounterAddition(owner, held.metric, held.period_start, reserved=-held.amount)
            )
            tx.uow.usage.refresh_held_until(owner, held.metric, held.period_start)
            tx.touch_usage(owner)
            return released

    def _held(self, tx: Transaction, owner: Owner, reservation_id: str) -> Reservation:
        held = tx.uow.usage.reservation(owner, reservation_id)
        if held.status is not ReservationStatus.HELD:
            raise InvalidInput(
                "reservation", f"reservation {reservation_id} is already {held.status.value}"
            )
        if held.expires_at <= tx.now:
            raise InvalidInput(
                "reservation",
                f"reservation {reservation_id} expired at {held.expires_at.isoformat()}",
            )
        return held

    def _settle(self, tx: Transaction, settled: Reservation) -> None:
        if not tx.uow.usage.settle_reservation(settled):
            current = tx.uow.usage.reservation(settled.owner, settled.id)
            raise InvalidInput(
                "reservation", f"reservation {settled.id} is already {current.status.value}"
            )

    def expire_reservations(
        self, tenant: str | None, now: datetime, batch: int = 500
    ) -> list[Reservation]:
        """The sweep's part: record the expiry of held reservations whose time ran out
        (answers stopped counting them when it did)."""
        with self._rt.read(tenant) as uow:
            due = list(uow.usage.held_reservations_due(now, batch))
        expired: list[Reservation] = []
        for held in due:
            with self._rt.transaction(tenant, now) as tx:
                expired.extend(expire_held(tx, [held]))
        return expired


def _plain(owner: object, metric: object, amount: object, known: set[str]) -> bool:
    """Arguments of the plainest kind, checked the cheap way: an owner, a whole amount in
    range and a metric seen valid before."""
    return (
        type(owner) is Owner
        and type(amount) is int
        and 0 < amount <= MAX_AMOUNT
        and type(metric) is str
        and metric in known
    )


def _plain_key(key: str | None) -> str | None:
    """A key of printable ASCII without edge spaces passes as it is; any other is checked
    in full (refused, or not ASCII)."""
    if key is None or (
        type(key) is str
        and 0 < len(key) <= MAX_KEY
        and key.isascii()
        and key.isprintable()
        and key[0] != " "
        and key[-1] != " "
    ):
        return key
    return check_idempotency_key(key)


_new_record = object.__new__
(
    _set_record_id,
    _set_record_owner,
    _set_record_metric,
    _set_record_amount,
    _set_record_period,
    _set_record_at,
    _set_record_key,
) = slot_setters(UsageRecord, "id", "owner", "metric", "amount", "period_start", "at", "key")
_new_decision = tuple.__new__
_system_now = datetime.now
