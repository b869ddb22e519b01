"""What every use case shares: the store, the clock, the policy, the cache, and the rule
that one call is one unit of work whose audit events commit with it.

A use case called inside ``Entitlements.atomic()`` joins that outer unit of work (seed
002's atomic creation: the host's owner row and our subscription commit together) within
a savepoint, so a call that fails there still leaves storage as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from entitlements.clock import SystemClock, timestamp_of
from entitlements.domain.access import AccessPolicy
from entitlements.domain.actor import Actor
from entitlements.domain.audit import AuditEvent
from entitlements.domain.instant import given_utc, utc
from entitlements.domain.owner import Owner
from entitlements.domain.subscription import Subscription
from entitlements.errors import InvalidInput, NotAuthorized
from entitlements.ports import Clock, EventListener, Store, UnitOfWork
from entitlements.serialization import to_document
from entitlements.service.authorization import AllowAll, Authorizer
from entitlements.service.cache import SnapshotCache
from entitlements.service.coherence import Coherence
from entitlements.service.ids import new_id as _new_id
from entitlements.telemetry import Telemetry, log_event

if TYPE_CHECKING:
    from entitlements.domain.due import DueChange

__all__ = ["Runtime", "Transaction"]

log = logging.getLogger("entitlements")


class Transaction:
    """A unit of work plus what the use cases did in it: audit events to append and the
    owners whose snapshots the commit invalidates."""

    def __init__(self, runtime: Runtime, uow: UnitOfWork, now: datetime) -> None:
        self.runtime = runtime
        self.uow = uow
        self.now = now
        uow.effective_at = now  # the history dates every write of this call with it
        self.tenant = uow.tenant
        self.events: list[AuditEvent] = []
        self.touched: set[Owner] = set()
        self.usage_touched: set[Owner] = set()
        self.after_end: list[Callable[[], None]] = []
        self.on_commit: list[Callable[[], None]] = []
        """Run once the outermost unit of work is durable (never after a rollback): what
        must not happen unless our writes did, such as calls to the payment provider."""
        self.catalog_changed = False
        self.held_states: list[Subscription] | None = None
        """Inside `states_held`: the states time made due, stored by `write_states` with
        one update for all instead of one each."""
        self.ended: list[DueChange] = []
        """Inside `states_held`: the changes time made that ended billing periods, handed
        to `Runtime.periods_ended` together once the held states are stored (their
        invoices read them back)."""
        self._documents: dict[int, tuple[Any, Mapping[str, Any]]] = {}
        """The audit documents of subscriptions written, by the (frozen) value they show,
        kept alive with it: one step's ``after`` is the next one's ``before``, written out
        once."""

    @contextmanager
    def states_held(self) -> Iterator[None]:
        """For a job handling many owners' due subscriptions in this unit of work (the
        sweep's groups): the states `bring_to_now` stores are held and written together
        at the end of the block (or before, by `write_states`, when something is about to
        read them back). The job only brings subscriptions to now in it: a use case that
        reads a state and then writes it needs that state stored."""
        if self.held_states is not None:
            yield
            return
        self.held_states, self.ended = [], []
        try:
            yield
            self.write_states()
            ended = self.ended
        finally:
            self.held_states, self.ended = None, []
        if ended and self.runtime.periods_ended is not None:
            self.runtime.periods_ended(self, ended)

    def write_states(self) -> None:
        """Store the states held (their owners' terms moved and counters stamped, as
        `update` does for one), before anything reads them back in this unit of work."""
        held = self.held_states
        if not held:
            return
        if len(held) == 1:
            self.uow.subscriptions.update(held.pop())
            return
        owners = list(dict.fromkeys(state.owner for state in held))
        self.uow.revisions.bump_many(owners)
        self.uow.revisions.stamp_many(dict.fromkeys(owners))
        self.uow.subscriptions.update_many(list(held))
        held.clear()

    def touch_usage(self, owner: Owner) -> None:
        """The owner's usage changed (its entitlements did not)."""
        self.usage_touched.add(owner)
        self.runtime.cache.invalidate_usage([owner])

    def change_terms(
        self, owner: Owner, since: datetime | None = None, *, stamp: bool = True
    ) -> int:
        """Take the owner's terms lock and move its revision, before reading anything the
        change will be checked against (usage, seats): concurrent consumptions either
        committed already, and are seen, or wait and then find their terms stale.
        ``since`` is the start of the owner's current usage period (counters of earlier
        periods take no more consumption and need no stamp). ``stamp=False``: the caller
        learns ``since`` under the lock, and calls `stamp_terms` before reading usage."""
        self.touched.add(owner)
        self.runtime.cache.invalidate([owner])
        return self.uow.revisions.bump(owner, since, stamp=stamp)

    def change_terms_of(self, owners: Sequence[Owner]) -> None:
        """`change_terms` (``stamp=False``) for many owners at once, in the order given:
        callers pass one stable order, so two of them never wait on each other in a
        cycle. The caller stamps each owner's counters before reading its usage."""
        self.touched.update(owners)
        self.runtime.cache.invalidate(owners)
        self.uow.revisions.bump_many(owners)

    def stamp_terms(self, owner: Owner, since: datetime | None = None) -> None:
        self.uow.revisions.stamp(owner, since)

    def authorize(
        self, actor: Actor, action: str, owner: Owner | None = None, subject: Any = None
    ) -> None:
        self.runtime.authorize(self.uow, self.tenant, actor, action, owner, subject)

    def _document(self, value: Any) -> Mapping[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Subscription):  # other values may be changed in between
            return to_document(value)
        known = self._documents.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        document = to_document(value)
        self._documents[id(value)] = (value, document)
        return document

    def record(
        self,
        actor: Actor,
        action: str,
        target: str,
        *,
        owner: Owner | None = None,
        before: Any = None,
        after: Any = None,
        reason: str | None = None,
    ) -> AuditEvent:
        event = AuditEvent(
            id=self.runtime.new_id(),
            at=self.now,
            actor=str(actor),
            action=action,
            target=target,
            owner=owner,
            before=self._document(before),
            after=self._document(after),
            reason=reason,
        )
        self.uow.audit.append(event)
        self.events.append(event)
        if owner is not None:
            self.touched.add(owner)
            # dropped now (so later reads in this unit of work miss the cache) and again
            # after commit (so no reader re-caches what it read before the commit)
            self.runtime.cache.invalidate([owner])
        return event


@attrs.define
class Runtime:
    store: Store
    clock: Clock = attrs.field(factory=SystemClock)
    policy: AccessPolicy = attrs.field(factory=AccessPolicy)
    authorizer: Authorizer = attrs.field(factory=AllowAll)
    listeners: list[EventListener] = attrs.field(factory=list)
    cache: SnapshotCache = attrs.field(factory=SnapshotCache)
    telemetry: Telemetry | None = None
    new_id: Callable[[], str] = _new_id
    """128 random bits as 32 hex digits (see `entitlements.service.ids`)."""
    coherence: Coherence = attrs.field(default=None)
    announce: Callable[[int], None] | None = None
    """Called with each committed feed position, after commit (a push to other
    processes, e.g. `entitlements.adapters.redis_hints.RedisChannel.announce`)."""
    periods_ended: Callable[[Transaction, Sequence[DueChange]], None] | None = None
    """What storing time's changes also does for the billing periods they ended (invoice
    them, `entitlements.service.invoices.invoice_ended_periods`), whichever call stores
    them first: the sweep, or a write that brings its owner to now."""
    timestamp: Callable[[], float] = attrs.field(init=False)
    warm_clock: Callable[[], float] = attrs.field(init=False)
    """What the warm path compares with the cache's window (`Coherence.confirmed_clock`)."""
    _ambient: ContextVar[Transaction | None] = attrs.field(
        factory=lambda: ContextVar("entitlements_transaction", default=None)
    )
    last_revision: ContextVar[int | None] = attrs.field(
        factory=lambda: ContextVar("entitlements_revision", default=None)
    )
    written: ContextVar[list[int] | None] = attrs.field(
        factory=lambda: ContextVar("entitlements_written", default=None)
    )
    """A list that a web request (`entitlements.readyourwrites`) sets for its duration:
    every feed position committed in its context is appended. A list, not a value, so
    that work the request hands to a thread with a copy of its context is heard too."""

    def __attrs_post_init__(self) -> None:
        self.timestamp = timestamp_of(self.clock)
        if self.timestamp is time.time:  # one reading serves the feed's window too
            self.cache.follow_wall_clock()
        if self.coherence is None:
            self.coherence = Coherence(self.store, self.cache, max_staleness=1.0)
        self.warm_clock = self.coherence.confirmed_clock(self.timestamp)

    def now(self, given: datetime | None = None) -> datetime:
        if given is not None:
            return given_utc(given, "now")
        return utc(self.clock.now(), "clock.now()")

    @contextmanager
    def transaction(
        self, tenant: str | None, now: datetime | None = None, join: object | None = None
    ) -> Iterator[Transaction]:
        outer = self._ambient.get()
        if outer is not None:
            if join is not None:
                raise InvalidInput(
                    "join",
                    "an atomic block is already open; join the host's transaction there",
                    join,
                )
            if outer.tenant != tenant:
                raise InvalidInput(
                    "tenant",
                    f"this atomic block is for tenant {outer.tenant!r}, not {tenant!r}",
                    tenant,
                )
            mark = (
                len(outer.events),
                set(outer.touched),
                outer.catalog_changed,
                set(outer.usage_touched),
            )
            hooks = len(outer.on_commit)
            try:
                with outer.uow.savepoint():
                    yield outer
            except BaseException:
                del outer.events[mark[0] :]
                del outer.on_commit[hooks:]
                outer.touched, outer.catalog_changed, outer.usage_touched = (
                    mark[1],
                    mark[2],
                    mark[3],
                )
                raise
            return
        deferred: list[Callable[[], None]] = []
        try:
            with self._observed(tenant) as handle, self.store.unit_of_work(tenant, join) as uow:
                tx = Transaction(self, uow, self.now(now))
                deferred = tx.after_end
                token = self._ambient.set(tx)
                try:
                    yield tx
                    uow.commit()
                finally:
                    self._ambient.reset(token)
                if self.telemetry is not None:
                    self.telemetry.committed(handle, tx.events)
                uow.when_durable(lambda: self.after_commit(tx))
        finally:
            for write in deferred:
                write()

    def read_now(self, tenant: str | None) -> datetime:
        """The instant a read answers for: the open ``atomic()`` block's (the one its
        writes act at) when the read joins it, otherwise the clock's."""
        outer = self._ambient.get()
        if outer is not None and outer.tenant == tenant:
            return outer.now
        return self.now()

    @contextmanager
    def read(self, tenant: str | None) -> Iterator[UnitOfWork]:
        """A unit of work for reading: the open ``atomic()`` block's when it is for the same
        tenant (so the block reads its own writes), otherwise a fresh one that is never
        committed."""
        outer = self._ambient.get()
        if outer is not None and outer.tenant == tenant:
            yield outer.uow
            return
        with self.store.unit_of_work(tenant, read_only=True) as uow:
            yield uow

    def authorize(
        self,
        uow: UnitOfWork,
        tenant: str | None,
        actor: Actor,
        action: str,
        owner: Owner | None = None,
        subject: Any = None,
    ) -> None:
        """Ask the authorizer, reading through ``uow``; a refusal is audited (in a unit
        of work of its own, see `record_refusal`) and raised."""
        try:
            self.authorizer.authorize(actor, action, owner=owner, subject=subject, uow=uow)
        except NotAuthorized as denied:
            target = f"owner:{owner}" if owner is not None else f"action:{action}"
            self.record_refusal(
                tenant,
                actor,
                "authorization.denied",
                target,
                owner=owner,
                after={"action": action},
                reason=denied.reason,
            )
            raise

    def permits(self, uow: UnitOfWork, actor: Actor, action: str, owner: Owner) -> bool:
        """Whether the authorizer lets ``actor`` do ``action`` on ``owner``. Lists use it
        to leave out what the reader may not see: a row left out is not a refusal, so
        nothing is audited."""
        try:
            self.authorizer.authorize(actor, action, owner=owner, subject=None, uow=uow)
        except NotAuthorized:
            return False
        return True

    def record_refusal(
        self,
        tenant: str | None,
        actor: Actor,
        action: str,
        target: str,
        *,
        owner: Owner | None = None,
        after: Any = None,
        reason: str | None = None,
    ) -> None:
        """Audit a refused call. The refused call's own unit of work rolled back, so the
        record is written in one of its own (outside any atomic block: a refusal stays on
        record even when the host's transaction rolls back)."""

        def write() -> None:
            token = self._ambient.set(None)
            try:
                with self.transaction(tenant) as tx:
                    tx.record(actor, action, target, owner=owner, after=after, reason=reason)
            finally:
                self._ambient.reset(token)

        outer = self._ambient.get()
        if outer is None:
            write()
        else:
            outer.after_end.append(write)

    @property
    def in_atomic_block(self) -> bool:
        return self._ambient.get() is not None

    @contextmanager
    def _observed(self, tenant: str | None) -> Iterator[Any]:
        if self.telemetry is None:
            yield None
        else:
            with self.telemetry.unit_of_work(tenant) as handle:
                yield handle

    def after_commit(self, tx: Transaction) -> None:
        """What follows a durable commit: publish its feed position, drop what it changed
        from the cache, then tell listeners and run the deferred steps (neither of which
        may undo it: their failures are logged)."""
        self._publish(tx.uow.committed_revision)
        self._drop_cached(tx)
        self._notify(tx)

    def _publish(self, revision: int | None) -> None:
        if revision is None:
            return
        self.note_revision(revision)
        if self.announce is not None:
            self.announce(revision)

    def note_revision(self, revision: int | None) -> None:
        """This context committed feed position ``revision`` (read-your-writes)."""
        self.last_revision.set(revision)
        written = self.written.get()
        if written is not None and revision is not None:
            written.append(revision)

    def _drop_cached(self, tx: Transaction) -> None:
        if tx.catalog_changed:
            self.cache.clear()
        elif tx.touched:
            self.cache.invalidate(tx.touched)
        if tx.usage_touched:
            self.cache.invalidate_usage(tx.usage_touched)

    def _notify(self, tx: Transaction) -> None:
        for event in tx.events:
            log_event(event)
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:
                    log.exception("entitlements listener %r failed on %s", listener, event.action)
        for hook in tx.on_commit:
            try:
                hook()
            except Exception:
                log.exception("entitlements after-commit step %r failed", hook)
