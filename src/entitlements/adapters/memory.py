"""The in-memory store: dictionaries with real rollback, for tests and quick starts.

A unit of work holds the store's lock from start to end (memory transactions are
serialised) and writes straight into the tables, logging how to undo each write; rollback
replays that log backwards. Stored values are frozen domain objects, so a caller can
never change stored state by mutating what it read. The notification outbox alone
writes into its records, and only while no caller holds them (see `_Notifications`).
"""

from __future__ import annotations

import copy
import operator
import threading
from bisect import bisect_left, bisect_right
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from itertools import compress
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from entitlements.domain.audit import AuditEvent
from entitlements.domain.billing import ProviderLink
from entitlements.domain.change import Change, ChangeKind, FeedPage
from entitlements.domain.contracts.contract import AWAITING_SIGNATURE, Contract, PersonalData
from entitlements.domain.contracts.events import ContractEvent
from entitlements.domain.invoice import Invoice, InvoiceKind, InvoiceStatus
from entitlements.domain.migration import (
    ItemStatus,
    Migration,
    MigrationItem,
    MigrationStatus,
    PriceLock,
)
from entitlements.domain.notification import Notification
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner, in_tenant
from entitlements.domain.plan import Plan
from entitlements.domain.provider_commands import CommandStatus, ProviderCommand
from entitlements.domain.requests import KeyedRequest
from entitlements.domain.subscription import Subscription, SubscriptionStatus, with_changes
from entitlements.domain.usage import (
    FOREVER,
    Consumption,
    Counter,
    CounterAddition,
    Reservation,
    ReservationStatus,
    SeatAssignment,
    UsageRecord,
    slot_setters,
    within,
)
from entitlements.errors import (
    Conflict,
    ContractNotFound,
    InvalidInput,
    InvoiceExists,
    InvoiceNotFound,
    MigrationNotFound,
    NotFound,
    OverrideNotFound,
    PlanExists,
    StaleWrite,
    StorageError,
    SubscriptionExists,
    UnknownPlan,
)

__all__ = ["MemoryStore"]

K = TypeVar("K")
V = TypeVar("V")
_MISSING: Any = object()


class _Undo:
    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []

    def set(self, table: dict[K, V], key: K, value: V) -> None:
        previous = table.get(key, _MISSING)
        self.steps.append(lambda: _restore(table, key, previous))
        table[key] = value

    def append(self, items: list[V], item: V) -> None:
        """Units of work hold the store's lock and nest as savepoints, so undo steps
        replay in stack order and popping the last item removes this one."""
        self.steps.append(lambda: _drop_last(items))
        items.append(item)

    def list_in(self, table: dict[K, list[V]], key: K) -> list[V]:
        """``table[key]``, made (and unmade on rollback) when missing: a refused write
        must leave no empty ledger behind."""
        found = table.get(key)
        if found is None:
            found = []
            self.set(table, key, found)
        return found

    def pop(self, items: list[V]) -> V:
        item = items.pop()
        self.steps.append(lambda: items.append(item))
        return item

    def delete(self, table: dict[K, V], key: K) -> None:
        previous = table[key]
        self.steps.append(lambda: _restore(table, key, previous))
        del table[key]

    def replay(self) -> None:
        while self.steps:
            self.steps.pop()()


def _keyed(owner: Owner, key: str) -> tuple[str | None, str, str, str]:
    return (owner.tenant, owner.kind, owner.id, key)


def _seq_of(change: tuple[Any, ...]) -> int:
    return change[0]  # type: ignore[no-any-return]


_USAGE = ChangeKind.USAGE.value


def _drop_last(items: list[Any]) -> None:
    items.pop()


def _restore(table: dict[Any, Any], key: Any, previous: Any) -> None:
    if previous is _MISSING:
        table.pop(key, None)
    else:
        table[key] = previous


_Slot = tuple[OverrideKind, str]


def _in_force(entries: Sequence[tuple[Any, ...]], when: datetime) -> list[tuple[int, Any]]:
    """The entries written with an instant at or before ``when``, numbered in the order
    written (the number breaks ties between writes of one instant: the last wins)."""
    return [(n, entry) for n, entry in enumerate(entries) if entry[0] <= when]


class _Tables:
    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}
        self.plan_versions: dict[tuple[str, int], Plan] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.subscriptions_by_owner: dict[Owner, tuple[str, ...]] = {}
        self.overrides: dict[Owner, dict[tuple[OverrideKind, str], Override]] = {}
        self.audit: dict[str, AuditEvent] = {}
        self.audit_by_owner: dict[Owner, tuple[str, ...]] = {}
        self.counters: dict[tuple[Owner, str, datetime], Counter] = {}
        self.counter_revisions: dict[tuple[Owner, str, datetime], int] = {}
        self.owner_revisions: dict[Owner, int] = {}
        self.changes: list[tuple[int, str | None, str | None, str | None, str, datetime]] = []
        """(seq, tenant, owner kind, owner id, change kind, at): plain values, so the collector
        stops tracking the rows."""
        self.next_seq = 1
        self.pruned_through = 0
        self.records: dict[tuple[Owner, str, datetime], list[UsageRecord]] = {}
        self.record_keys: dict[tuple[str | None, str, str, str], UsageRecord] = {}
        """By `_keyed` (plain strings: the collector stops tracking the keys)."""
        self.reservations: dict[str, Reservation] = {}
        self.seats: dict[tuple[Owner, str, str], SeatAssignment] = {}
        self.contracts: dict[str, Contract] = {}
        self.contract_due: dict[str, datetime | None] = {}
        """By contract id: when the sweep has something to do for it next."""
        self.contract_tokens: dict[str, tuple[str | None, str, str]] = {}
        self.contract_events: dict[str, list[ContractEvent]] = {}
        self.personal_data: dict[str, PersonalData] = {}
        self.attachments: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.provider_events: dict[tuple[str | None, str], datetime] = {}
        self.provider_links: dict[tuple[str | None, str], ProviderLink] = {}
        self.provider_commands: dict[tuple[str | None, str], ProviderCommand] = {}
        self.requests: dict[tuple[Owner, str], KeyedRequest] = {}
        self.subscription_history: dict[Owner, list[tuple[datetime, Subscription]]] = {}
        """Per owner, every stored state of its subscriptions with the instant it took
        effect, in the order written (append-only)."""
        self.notifications: dict[str | None, dict[str, tuple[int, Notification]]] = {}
        """Per tenant, by id: the order written and the record (see `_Notifications`)."""
        self.notification_keys: dict[tuple[Owner, str], str] = {}
        """By (owner, key): the id of the notification of that fact."""
        self.notification_seq = 0
        self.notification_pending: dict[str | None, dict[str, Notification]] = {}
        """Per tenant, the records of notifications waiting for delivery by id, in the order
        written."""
        self.notifications_delivered: dict[str | None, dict[str, datetime]] = {}
        """Per tenant, by id: when a handler took it."""
        self.migrations: dict[tuple[str | None, str], Migration] = {}
        self.migration_items: dict[tuple[str | None, str, int], MigrationItem] = {}
        """By (tenant, migration id, seq)."""
        self.migration_sizes: dict[tuple[str | None, str], int] = {}
        self.migration_cursors: dict[tuple[str | None, str], int] = {}
        """The lowest position that may still be pending (a claim starts there)."""
        self.invoices: dict[str, Invoice] = {}
        self.invoices_by_owner: dict[Owner, tuple[str, ...]] = {}
        self.invoice_counters: dict[tuple[str | None, str], int] = {}
        self.override_history: dict[Owner, list[tuple[datetime, _Slot, Override | None]]] = {}
        """Per owner, every override set (or removed: ``None``) with the instant, in the
        order written (append-only)."""


class _Repository(Generic[K]):
    def __init__(self, uow: _MemoryUnitOfWork) -> None:
        self._uow = uow
        self._t = uow.tables
        self._undo = uow.undo

    def _log(self, history: dict[Owner, list[Any]], owner: Owner, entry: Any) -> None:
        """Append ``entry`` to the owner's history (undone with the unit of work)."""
        entries = history.get(owner)
        if entries is None:
            entries = []
            self._undo.set(history, owner, entries)
        self._undo.append(entries, entry)

    def _scope(self, owner: Owner) -> Owner:
        return in_tenant(owner, self._uow.tenant)


class _Plans(_Repository[str]):
    def _with_plan_fields(self, terms: Plan) -> Plan:
        head = self._t.plans[terms.key]
        return attrs.evolve(
            terms,
            name=head.name,
            status=head.status,
            owner_kinds=head.owner_kinds,
            revision=head.revision,
        )

    def get(self, key: str, version: int | None = None) -> Plan:
        head = self._t.plans.get(key)
        if head is None:
            raise UnknownPlan(key)
        if version is None or version == head.version:
            return head
        terms = self._t.plan_versions.get((key, version))
        if terms is None:
            raise UnknownPlan(key, version)
        return self._with_plan_fields(terms)

    def find(self, key: str) -> Plan | None:
        return self._t.plans.get(key)

    def get_many(self, wanted: Sequence[tuple[str, int | None]]) -> list[Plan]:
        return [self.get(key, version) for key, version in wanted]

    def list(self) -> Sequence[Plan]:
        return [self._t.plans[k] for k in sorted(self._t.plans)]

    def any_priced(self) -> bool:
        return any(
            plan.price is not None or plan.charges or plan.net_days is not None
            for plan in self._t.plan_versions.values()
        )

    def versions(self, key: str) -> Sequence[Plan]:
        head = self.get(key)
        return [
            self._with_plan_fields(self._t.plan_versions[(key, v)])
            for v in range(1, head.version + 1)
        ]

    def add(self, plan: Plan) -> Plan:
        if plan.key in self._t.plans:
            raise PlanExists(plan.key)
        stored = attrs.evolve(plan, version=1, revision=1)
        self._uow.feed.note(None, ChangeKind.CATALOG)
        self._undo.set(self._t.plans, plan.key, stored)
        self._undo.set(self._t.plan_versions, (plan.key, 1), stored)
        return stored

    def update(self, plan: Plan) -> Plan:
        head = self._t.plans.get(plan.key)
        if head is None:
            raise UnknownPlan(plan.key)
        if head.revision != plan.revision:
            raise StaleWrite("plan", plan.key, plan.revision)
        if plan.version not in (head.version, head.version + 1):
            raise InvalidInput(
                "plan.version", f"must be {head.version} or {head.version + 1}", plan.version
            )
        stored = attrs.evolve(plan, revision=head.revision + 1)
        if plan.version == head.version:
            stored = attrs.evolve(
                head,
                name=plan.name,
                status=plan.status,
                owner_kinds=plan.owner_kinds,
                revision=stored.revision,
            )
        self._uow.feed.note(None, ChangeKind.CATALOG)
        self._undo.set(self._t.plans, plan.key, stored)
        self._undo.set(self._t.plan_versions, (plan.key, stored.version), stored)
        return stored


class _Subscriptions(_Repository[str]):
    def current(
        self, owner: Owner, *, with_plans: Sequence[tuple[str, int | None]] = ()
    ) -> Subscription | None:
        ids = self._t.subscriptions_by_owner.get(self._scope(owner), ())
        return self._t.subscriptions[ids[-1]] if ids else None

    def current_many(
        self, owners: Sequence[Owner], *, with_plans: Sequence[tuple[str, int | None]] = ()
    ) -> Mapping[Owner, Subscription]:
        found = {owner: self.current(owner) for owner in owners}
        return {owner: s for owner, s in found.items() if s is not None}

    def get(self, subscription_id: str) -> Subscription:
        found = self._t.subscriptions.get(subscription_id)
        if found is None or found.owner.tenant != self._uow.tenant:
            raise NotFound(f"subscription {subscription_id} does not exist")
        return found

    def read_ahead(self, subscription_ids: Sequence[str]) -> None:
        pass  # a get reads memory: nothing to gain by reading ahead

    def history(self, owner: Owner) -> Sequence[Subscription]:
        ids = self._t.subscriptions_by_owner.get(self._scope(owner), ())
        return [self._t.subscriptions[i] for i in ids]

    def history_page(
        self, owner: Owner, after: int | None, limit: int
    ) -> Sequence[tuple[int, Subscription]]:
        ids = self._t.subscriptions_by_owner.get(self._scope(owner), ())
        start = 0 if after is None else after + 1
        return [(i, self._t.subscriptions[ids[i]]) for i in range(start, len(ids))][:limit]

    def add(self, subscription: Subscription) -> Subscription:
        owner = self._scope(subscription.owner)
        current = self.current(owner)
        if current is not None and not current.is_terminal:
            raise SubscriptionExists(owner, current.status.value)
        if subscription.id in self._t.subscriptions:
            raise StorageError(f"subscription id {subscription.id} is already used")
        stored = with_changes(subscription, revision=1)
        self._uow.revisions.bump(owner)
        self._undo.set(self._t.subscriptions, stored.id, stored)
        ids = self._t.subscriptions_by_owner.get(owner, ())
        self._undo.set(self._t.subscriptions_by_owner, owner, (*ids, stored.id))
        self._log(self._t.subscription_history, owner, (self._uow.written_at(), stored))
        return stored

    def update_many(self, subscriptions: Sequence[Subscription]) -> Sequence[Subscription]:
        return [self.update(subscription) for subscription in subscriptions]

    def update(self, subscription: Subscription) -> Subscription:
        self._scope(subscription.owner)
        existing = self.get(subscription.id)
        if existing.revision != subscription.revision:
            raise StaleWrite("subscription", subscription.id, subscription.revision)
        if existing.owner != subscription.owner:
            raise InvalidInput(
                "owner", "a subscription cannot move to another owner", subscription.owner
            )
        stored = with_changes(subscription, revision=existing.revision + 1)
        self._uow.revisions.bump(subscription.owner)
        self._undo.set(self._t.subscriptions, stored.id, stored)
        self._log(self._t.subscription_history, stored.owner, (self._uow.written_at(), stored))
        return stored

    def at(self, owner: Owner, when: datetime) -> Subscription | None:
        entries = _in_force(self._t.subscription_history.get(self._scope(owner), []), when)
        if not entries:
            return None
        # the subscription created last, as its last write left it
        newest = max(entries, key=lambda e: (e[1][1].created_at, e[0]))[1][1].id
        mine = [(at, n, sub) for n, (at, sub) in entries if sub.id == newest]
        found: Subscription = max(mine, key=lambda e: (e[0], e[1]))[2]
        return found

    def states(
        self, owner: Owner, start: datetime, end: datetime
    ) -> Sequence[tuple[datetime, Subscription | None]]:
        entries = self._t.subscription_history.get(self._scope(owner), [])
        instants = sorted({at for at, _ in entries if start < at < end})
        return [(at, self.at(owner, at)) for at in [start, *instants]]

    def states_many(
        self, wanted: Sequence[tuple[Owner, datetime, datetime]]
    ) -> Sequence[Sequence[tuple[datetime, Subscription | None]]]:
        return [self.states(owner, start, end) for owner, start, end in wanted]

    def due(
        self,
        now: datetime,
        limit: int = 500,
        statuses: frozenset[SubscriptionStatus] | None = None,
    ) -> Sequence[Subscription]:
        found = []
        for sub in self._t.subscriptions.values():
            if sub.owner.tenant != self._uow.tenant:
                continue
            if statuses is not None and sub.status not in statuses:
                continue
            at = sub.next_change_at()
            if at is not None and at <= now:
                found.append((at, sub))
        found.sort(key=lambda pair: pair[0])
        return [sub for _, sub in found[:limit]]

    def due_ids(self, now: datetime, limit: int = 500) -> Sequence[tuple[str, Owner]]:
        return [(sub.id, sub.owner) for sub in self.due(now, limit)]

    def status_counts(self, now: datetime) -> tuple[Mapping[str, int], Sequence[Subscription]]:
        counts: Tally[str] = Tally()
        moved = []
        for owner, ids in self._t.subscriptions_by_owner.items():
            if owner.tenant != self._uow.tenant:
                continue
            sub = self._t.subscriptions[ids[-1]]
            counts[sub.status.value] += 1
            at = sub.next_change_at()
            if at is not None and at <= now:
                moved.append(sub)
        return counts, moved

    def fold_status_counts(self, limit: int) -> int:
        return 0  # counted from the subscriptions themselves

    def count_on_plans(self, plan_keys: Iterable[str], exclude_owner: Owner | None = None) -> int:
        keys = set(plan_keys)
        count = 0
        for owner, ids in self._t.subscriptions_by_owner.items():
            if owner.tenant != self._uow.tenant or owner == exclude_owner:
                continue
            sub = self._t.subscriptions[ids[-1]]
            if not sub.is_terminal and sub.plan_key in keys:
                count += 1
        return count

    def search(
        self, text: str | None, statuses: frozenset[str] | None, limit: int = 100
    ) -> Sequence[Subscription]:
        return [sub for _, sub in self.search_page(text, statuses, None, limit)[0]]

    def search_page(
        self, text: str | None, statuses: frozenset[str] | None, before: int | None, limit: int
    ) -> tuple[Sequence[tuple[int, Subscription]], int | None]:
        needle = (text or "").lower()
        order = {sub_id: n for n, sub_id in enumerate(self._t.subscriptions)}
        latest = (
            (order[ids[-1]], self._t.subscriptions[ids[-1]])
            for owner, ids in self._t.subscriptions_by_owner.items()
            if owner.tenant == self._uow.tenant and ids
        )
        found = [
            (n, sub)
            for n, sub in latest
            if (before is None or n < before) and _found_by(sub, needle, statuses)
        ]
        found.sort(key=lambda row: row[0], reverse=True)
        return found[: max(limit, 0)], None


def _found_by(sub: Subscription, needle: str, statuses: frozenset[str] | None) -> bool:
    """A search's filter: the status among ``statuses`` (``None``: any), and ``needle``
    (lower case) in the owner's id, the external id or the plan key."""
    if statuses is not None and sub.status.value not in statuses:
        return False
    haystack = (sub.owner.id, sub.external_id or "", sub.plan_key)
    return not needle or any(needle in h.lower() for h in haystack)


class _Overrides(_Repository[Owner]):
    def for_owner(self, owner: Owner) -> Sequence[Override]:
        found = self._t.overrides.get(self._scope(owner), {})
        return [found[k] for k in sorted(found)]

    def put(self, override: Override) -> Override | None:
        owner = self._scope(override.owner)
        current = self._t.overrides.get(owner, {})
        slot = (override.kind, override.key)
        replaced = current.get(slot)
        self._uow.revisions.bump(owner)
        self._undo.set(self._t.overrides, owner, {**current, slot: override})
        self._log(self._t.override_history, owner, (self._uow.written_at(), slot, override))
        return replaced

    def remove(self, owner: Owner, kind: OverrideKind, key: str) -> Override:
        current = self._t.overrides.get(self._scope(owner), {})
        slot = (kind, key)
        if slot not in current:
            raise OverrideNotFound(owner, f"{kind.value} {key}")
        removed = current[slot]
        self._uow.revisions.bump(owner)
        self._undo.set(self._t.overrides, owner, {k: v for k, v in current.items() if k != slot})
        self._log(self._t.override_history, owner, (self._uow.written_at(), slot, None))
        return removed

    def at(self, owner: Owner, when: datetime) -> Sequence[Override]:
        entries = _in_force(self._t.override_history.get(self._scope(owner), []), when)
        last: dict[_Slot, tuple[datetime, int, Override | None]] = {}
        for n, (at, slot, override) in entries:
            known = last.get(slot)
            if known is None or (at, n) > known[:2]:
                last[slot] = (at, n, override)
        return [found for slot in sorted(last) if (found := last[slot][2]) is not None]

    def remove_expired(
        self, owner: Owner, kind: OverrideKind, key: str, now: datetime
    ) -> Override | None:
        found = self._t.overrides.get(self._scope(owner), {}).get((kind, key))
        if found is None or found.is_active(now):
            return None
        return self.remove(owner, kind, key)

    def expired(self, now: datetime, limit: int = 500) -> Sequence[Override]:
        found: list[Override] = []
        for owner, overrides in self._t.overrides.items():
            if owner.tenant == self._uow.tenant:
                found.extend(o for o in overrides.values() if not o.is_active(now))
        found.sort(key=lambda o: (o.expires_at, o.owner.kind, o.owner.id, o.kind, o.key))
        return found[:limit]


class _Audit(_Repository[Owner]):
    def append(self, event: AuditEvent) -> None:
        if event.owner is not None:
            self._scope(event.owner)
        self._undo.set(self._t.audit, event.id, event)
        if event.owner is not None:
            positions = self._t.audit_by_owner.get(event.owner, ())
            self._undo.set(self._t.audit_by_owner, event.owner, (*positions, event.id))

    def for_owner(self, owner: Owner) -> Sequence[AuditEvent]:
        return [self._t.audit[i] for i in self._t.audit_by_owner.get(self._scope(owner), ())]

    def for_target(self, target: str) -> Sequence[AuditEvent]:
        return [e for _, e in self.page_for_target(target, None, len(self._t.audit))]

    def page_for_owner(
        self, owner: Owner, after: int | None, limit: int, *, newest_first: bool = False
    ) -> Sequence[tuple[int, AuditEvent]]:
        ids = self._t.audit_by_owner.get(self._scope(owner), ())
        if newest_first:
            positions = range(len(ids) - 1 if after is None else after - 1, -1, -1)
        else:
            positions = range(0 if after is None else after + 1, len(ids))
        return [(i, self._t.audit[ids[i]]) for i in positions[:limit]]

    def page_for_target(
        self, target: str, after: int | None, limit: int
    ) -> Sequence[tuple[int, AuditEvent]]:
        found = [
            (i, e)
            for i, e in enumerate(self._t.audit.values())
            if (after is None or i > after)
            and e.target == target
            and (e.owner is None or e.owner.tenant == self._uow.tenant)
        ]
        return found[:limit]


class _Usage(_Repository[Owner]):
    def counter(self, owner: Owner, metric: str, period_start: datetime) -> Counter:
        found = self._t.counters.get((self._scope(owner), metric, period_start))
        return found if found is not None else Counter(owner, metric, period_start)

    def counters(self, owner: Owner, metric: str) -> Sequence[Counter]:
        self._scope(owner)
        found = [c for (o, m, _), c in self._t.counters.items() if o == owner and m == metric]
        return sorted(found, key=lambda c: c.period_start)

    def counters_page(
        self, owner: Owner, metric: str, after: datetime | None, limit: int
    ) -> Sequence[Counter]:
        found = self.counters(owner, metric)
        return [c for c in found if after is None or c.period_start > after][:limit]

    def ensure(self, owner: Owner, metric: str, period_start: datetime, revision: int) -> None:
        key = (self._scope(owner), metric, period_start)
        if key not in self._t.counters:
            self._undo.set(self._t.counters, key, Counter(owner, metric, period_start))
        self._undo.set(self._t.counter_revisions, key, revision)

    def add(self, addition: CounterAddition) -> Counter | None:
        a = addition
        owner, metric, period_start = a.owner, a.metric, a.period_start
        key = (self._scope(owner), metric, period_start)
        grows = a.used + a.reserved > 0
        if not self._countable(key, a.revision, a.now if grows else None, a.fallback):
            return None
        current = self.counter(owner, metric, period_start)
        after = _added(current, a.used, a.reserved, a.hold_until)
        if after is None or (grows and not within(a.ceiling, after.used, after.reserved)):
            return None
        if key not in self._t.counters:
            self._undo.set(self._t.counter_revisions, key, self._t.owner_revisions.get(owner, 0))
        self._undo.set(self._t.counters, key, after)
        self._uow.feed.note(owner, ChangeKind.USAGE)
        return after

    def _countable(
        self,
        key: tuple[Owner, str, datetime],
        revision: int | None,
        now: datetime | None,
        fallback: tuple[str, int] | None,
    ) -> bool:
        """The conditions of a conditional count other than the ceiling: the counter
        stamped with ``revision`` (when given), no held reservation run out by ``now``
        (when given), the fallback plan version still the latest."""
        t = self._t
        if revision is not None and (
            key not in t.counters or t.counter_revisions.get(key, 0) != revision
        ):
            return False
        current = t.counters.get(key)
        if now is not None and current is not None and current.holds_expired(now):
            return False
        return _fallback_current(t, fallback)

    def set_used(
        self,
        owner: Owner,
        metric: str,
        period_start: datetime,
        used: int,
        *,
        revision: int | None = None,
    ) -> Counter | None:
        key = (self._scope(owner), metric, period_start)
        if revision is not None and (
            key not in self._t.counters or self._t.counter_revisions.get(key, 0) != revision
        ):
            return None
        if key not in self._t.counters:
            self.ensure(owner, metric, period_start, self._t.owner_revisions.get(owner, 0))
        after = attrs.evolve(self.counter(owner, metric, period_start), used=used)
        self._undo.set(self._t.counters, key, after)
        self._uow.feed.note(owner, ChangeKind.USAGE)
        return after

    def add_record(self, record: UsageRecord) -> UsageRecord | None:
        owner = self._scope(record.owner)
        if record.key is not None:
            earlier = self._t.record_keys.get(_keyed(owner, record.key))
            if earlier is not None:
                return earlier
            self._undo.set(self._t.record_keys, _keyed(owner, record.key), record)
        self._undo.append(
            self._undo.list_in(self._t.records, (owner, record.metric, record.period_start)),
            record,
        )
        return None

    def consume(self, consumption: Consumption) -> tuple[Counter | None, UsageRecord | None]:
        t = self._t
        record = consumption.record
        owner = record.owner
        if owner.tenant != self._uow.tenant:
            self._scope(owner)
        after, earlier, before, records = _charge(t, consumption)
        if after is None:
            return None, earlier
        assert before is not None
        assert records is not None
        self._undo.steps.append(partial(_uncharge, t, record, before, records))
        noted = self._uow.noted
        if noted.get(owner) is not ChangeKind.TERMS:
            noted[owner] = ChangeKind.USAGE
        return after, None

    def recorded(self, keys: Sequence[tuple[Owner, str]]) -> dict[tuple[Owner, str], UsageRecord]:
        found = {}
        for owner, key in keys:
            earlier = self._t.record_keys.get(_keyed(self._scope(owner), key))
            if earlier is not None:
                found[(owner, key)] = earlier
        return found

    def counters_of(
        self, keys: Sequence[tuple[Owner, str, datetime]], *, lock: bool = False
    ) -> dict[tuple[Owner, str, datetime], tuple[Counter, int]]:
        found = {}
        for key in keys:
            self._scope(key[0])
            counter = self._t.counters.get(key)
            if counter is not None:
                found[key] = (counter, self._t.counter_revisions.get(key, 0))
        return found

    def add_records(self, records: Sequence[UsageRecord]) -> None:
        for record in records:
            owner = self._scope(record.owner)
            if record.key is not None:
                if _keyed(owner, record.key) in self._t.record_keys:
                    raise Conflict(f"usage with key {record.key!r} of {owner} is recorded already")
                self._undo.set(self._t.record_keys, _keyed(owner, record.key), record)
            self._undo.append(
                self._undo.list_in(self._t.records, (owner, record.metric, record.period_start)),
                record,
            )

    def add_counted_many(self, additions: Sequence[CounterAddition]) -> bool:
        return all(self.add(a) is not None for a in additions)

    def remove_record(self, owner: Owner, record_id: str) -> None:
        self._scope(owner)
        for (o, _, _), records in self._t.records.items():
            if o == owner and records and records[-1].id == record_id:
                removed = self._undo.pop(records)
                if removed.key is not None:
                    self._undo.delete(self._t.record_keys, _keyed(owner, removed.key))
                return

    def forget_keys(self, before: datetime, limit: int = 10_000) -> int:
        forgotten = self._forget_record_keys(before, limit)
        return forgotten + self._forget_reservation_keys(before, limit - forgotten)

    def _forget_record_keys(self, before: datetime, limit: int) -> int:
        old = [
            (keyed, record)
            for keyed, record in self._t.record_keys.items()
            if keyed[0] == self._uow.tenant and record.at < before
        ][:limit]
        for keyed, record in old:
            self._undo.delete(self._t.record_keys, keyed)
            records = self._t.records[(record.owner, record.metric, record.period_start)]
            at = next(i for i, r in enumerate(records) if r.id == record.id)
            self._undo.steps.append(partial(records.__setitem__, at, record))
            records[at] = attrs.evolve(record, key=None)
        return len(old)

    def _forget_reservation_keys(self, before: datetime, limit: int) -> int:
        settled = [
            r
            for r in self._t.reservations.values()
            if r.owner.tenant == self._uow.tenant
            and r.key is not None
            and r.settled_at is not None
            and r.settled_at < before
        ][:limit]
        for reservation in settled:
            self._undo.set(
                self._t.reservations, reservation.id, attrs.evolve(reservation, key=None)
            )
        return len(settled)

    def records(self, owner: Owner, metric: str, period_start: datetime) -> Sequence[UsageRecord]:
        return list(self._t.records.get((self._scope(owner), metric, period_start), ()))

    def add_reservation(self, reservation: Reservation) -> Reservation | None:
        owner = self._scope(reservation.owner)
        if reservation.key is not None:
            for stored in self._t.reservations.values():
                if stored.owner == owner and stored.key == reservation.key:
                    return stored
        self._undo.set(self._t.reservations, reservation.id, reservation)
        return None

    def reservation(self, owner: Owner, reservation_id: str) -> Reservation:
        found = self._t.reservations.get(reservation_id)
        if found is None or found.owner != self._scope(owner):
            raise NotFound(f"reservation {reservation_id} of {owner} does not exist")
        return found

    def settle_reservation(self, reservation: Reservation) -> bool:
        stored = self.reservation(reservation.owner, reservation.id)
        if stored.status is not ReservationStatus.HELD:
            return False
        self._undo.set(self._t.reservations, reservation.id, reservation)
        return True

    def refresh_held_until(self, owner: Owner, metric: str, period_start: datetime) -> None:
        key = (self._scope(owner), metric, period_start)
        current = self._t.counters.get(key)
        if current is None:
            return
        held = [
            r.expires_at
            for r in self._t.reservations.values()
            if r.owner == owner
            and r.metric == metric
            and r.period_start == period_start
            and r.status is ReservationStatus.HELD
        ]
        self._undo.set(
            self._t.counters, key, attrs.evolve(current, held_until=min(held) if held else None)
        )

    def expired_held(
        self, owner: Owner, metric: str, period_start: datetime, now: datetime
    ) -> Sequence[Reservation]:
        self._scope(owner)
        found = [
            r
            for r in self._t.reservations.values()
            if r.owner == owner
            and r.metric == metric
            and r.period_start == period_start
            and r.status is ReservationStatus.HELD
            and r.expires_at <= now
        ]
        return sorted(found, key=lambda r: (r.expires_at, r.id))

    def held_reservations_due(self, now: datetime, limit: int = 500) -> Sequence[Reservation]:
        found = [
            r
            for r in self._t.reservations.values()
            if r.owner.tenant == self._uow.tenant
            and r.status is ReservationStatus.HELD
            and r.expires_at <= now
        ]
        found.sort(key=lambda r: (r.expires_at, r.id))
        return found[:limit]


def _fallback_current(t: _Tables, fallback: tuple[str, int] | None) -> bool:
    """Owners on the fallback plan count under its latest version only."""
    if fallback is None:
        return True
    head = t.plans.get(fallback[0])
    return head is not None and head.version == fallback[1]


def _added(
    current: Counter, used: int, reserved: int, hold_until: datetime | None
) -> Counter | None:
    """``current`` with units added (or taken back), holding until the earlier of its
    hold and ``hold_until``; ``None`` if either count would go below zero."""
    held = current.held_until
    if hold_until is not None and (held is None or held > hold_until):
        held = hold_until
    after = attrs.evolve(
        current, used=current.used + used, reserved=current.reserved + reserved, held_until=held
    )
    if after.used < 0 or after.reserved < 0:
        return None
    return after


def _charge(
    t: _Tables, consumption: Consumption
) -> tuple[Counter | None, UsageRecord | None, Counter | None, list[UsageRecord] | None]:
    """Consume ``record`` by the rules of ``usage.consume``, for the unit of work and the
    inline path alike. Returns the counter after, with the counter before and the ledger
    list the row went to (what an undo needs); or the record stored earlier under its
    key; or nothing, refused: no counter stamped with ``revision``, a held reservation
    run out, the fallback plan moved on, or the ceiling passed."""
    record = consumption.record
    owner = record.owner
    keyed = None
    if record.key is not None:
        keyed = (owner.tenant, owner.kind, owner.id, record.key)  # `_keyed`, inline
        earlier = t.record_keys.get(keyed)
        if earlier is not None:
            return None, earlier, None, None
    key = (owner, record.metric, record.period_start)
    current = t.counters.get(key)
    if current is None or t.counter_revisions.get(key, 0) != consumption.revision:
        return None, None, None, None
    held = current.held_until
    if (held is not None and held <= consumption.now) or not _fallback_current(
        t, consumption.fallback
    ):
        return None, None, None, None
    used = current.used + record.amount
    if not within(consumption.ceiling, used, current.reserved):
        return None, None, None, None
    # a counter from values that came from stored counters (already checked): the slots
    # are filled directly, skipping the converters
    after = _new(Counter)
    _set_counter_owner(after, owner)
    _set_counter_metric(after, record.metric)
    _set_counter_period(after, record.period_start)
    _set_counter_used(after, used)
    _set_counter_reserved(after, current.reserved)
    _set_counter_held(after, held)
    t.counters[key] = after
    if keyed is not None:
        t.record_keys[keyed] = record
    records = t.records.setdefault(key, [])
    records.append(record)
    return after, None, current, records


def _uncharge(t: _Tables, record: UsageRecord, before: Counter, records: list[UsageRecord]) -> None:
    """Undo `_charge` (the key was not recorded before it: `_charge` checked)."""
    t.counters[(record.owner, record.metric, record.period_start)] = before
    if record.key is not None:
        del t.record_keys[_keyed(record.owner, record.key)]
    records.pop()
    if not records:
        del t.records[(record.owner, record.metric, record.period_start)]


_new = object.__new__
(
    _set_counter_owner,
    _set_counter_metric,
    _set_counter_period,
    _set_counter_used,
    _set_counter_reserved,
    _set_counter_held,
) = slot_setters(Counter, "owner", "metric", "period_start", "used", "reserved", "held_until")


class _Revisions(_Repository[Owner]):
    def current(self, owner: Owner) -> int:
        return self._t.owner_revisions.get(self._scope(owner), 0)

    def lock(self, owner: Owner) -> int:
        return self.current(owner)  # a memory unit of work holds the store's lock throughout

    def lock_rule(self, rule: str) -> None:
        pass  # the store's lock is held for the whole unit of work

    def claim(self, owner: Owner) -> bool:
        self._scope(owner)
        return True  # likewise: no other unit of work runs while this one is open

    def claim_many(self, owners: Sequence[Owner]) -> set[Owner]:
        return {owner for owner in owners if self.claim(owner)}

    def bump(self, owner: Owner, since: datetime | None = None, *, stamp: bool = True) -> int:
        done = self._uow.bumped.get(self._scope(owner))
        if done is not None:
            return done
        revision = self._t.owner_revisions.get(owner, 0) + 1
        self._undo.set(self._t.owner_revisions, owner, revision)
        self._uow.bumped[owner] = revision
        self._uow.feed.note(owner, ChangeKind.TERMS)
        if stamp:
            self.stamp(owner, since)
        return revision

    def bump_many(self, owners: Sequence[Owner]) -> Mapping[Owner, int]:
        return {owner: self.bump(owner, stamp=False) for owner in owners}

    def stamp_many(self, since: Mapping[Owner, datetime | None]) -> None:
        for owner, start in since.items():
            self.stamp(owner, start)

    def stamp(self, owner: Owner, since: datetime | None = None) -> None:
        revision = self._uow.bumped[self._scope(owner)]
        for key in [k for k in self._t.counters if k[0] == owner]:
            if since is None or key[2] == FOREVER or key[2] >= since:
                self._undo.set(self._t.counter_revisions, key, revision)


class _Feed(_Repository[Owner]):
    def note(self, owner: Owner | None, kind: ChangeKind) -> None:
        noted = self._uow.noted
        if owner is None:
            noted[None] = ChangeKind.CATALOG
        elif noted.get(self._scope(owner)) is not ChangeKind.TERMS:
            noted[owner] = kind

    def write(self) -> int | None:
        last = None
        stamp = datetime.now(UTC)
        for owner, kind in self._uow.noted.items():
            last = self._t.next_seq
            self._t.next_seq += 1
            if owner is None:
                self._t.changes.append((last, None, None, None, kind.value, stamp))
            else:
                self._t.changes.append(
                    (last, owner.tenant, owner.kind, owner.id, kind.value, stamp)
                )
        return last

    def read(self, after: int, missing: Sequence[int] = (), limit: int = 10_000) -> FeedPage:
        changes = self._t.changes  # in order of seq: found by bisection, not by a scan
        rows = []
        for seq in sorted(set(missing)):
            at = bisect_left(changes, seq, key=_seq_of)
            if at < len(changes) and changes[at][0] == seq and seq <= after:
                rows.append(changes[at])
        start = bisect_right(changes, after, key=_seq_of)
        rows.extend(changes[start : start + limit])
        found = [
            Change(
                seq, ChangeKind(kind), None if kind_of is None else Owner(kind_of, id_of, tenant)
            )
            for seq, tenant, kind_of, id_of, kind, _ in rows[:limit]
        ]
        head = max([after, *(c.seq for c in found)])
        return FeedPage(tuple(found), self._t.pruned_through, head)

    def head(self) -> int:
        return self._t.next_seq - 1

    def prune(self, before: datetime, limit: int = 10_000) -> int:
        head = self.head()
        old = [row for row in self._t.changes if row[5] < before and row[0] < head][:limit]
        if not old:
            return 0
        through = old[-1][0]
        kept = [row for row in self._t.changes if not (row[0] <= through and row[5] < before)]
        everything = list(self._t.changes)
        self._undo.steps.append(lambda: self._restore_changes(everything))
        self._t.changes[:] = kept
        previous = self._t.pruned_through
        self._undo.steps.append(lambda: setattr(self._t, "pruned_through", previous))
        self._t.pruned_through = max(previous, through)
        return len(old)

    def _restore_changes(self, rows: list[Any]) -> None:
        self._t.changes[:] = rows


class _Seats(_Repository[Owner]):
    def assigned(self, owner: Owner, pool: str) -> Sequence[SeatAssignment]:
        self._scope(owner)
        found = [a for (o, p, _), a in self._t.seats.items() if o == owner and p == pool]
        return sorted(found, key=lambda a: a.member)

    def add(self, assignment: SeatAssignment) -> None:
        key = (self._scope(assignment.owner), assignment.pool, assignment.member)
        if key in self._t.seats:
            raise Conflict(
                f"{assignment.member} already holds a {assignment.pool} seat of {assignment.owner}"
            )
        self._undo.set(self._t.seats, key, assignment)

    def remove(self, owner: Owner, pool: str, member: str) -> SeatAssignment:
        key = (self._scope(owner), pool, member)
        if key not in self._t.seats:
            raise NotFound(f"{member} holds no {pool} seat of {owner}")
        removed = self._t.seats[key]
        self._undo.delete(self._t.seats, key)
        return removed


class _Contracts(_Repository[str]):
    def _index_tokens(self, before: Contract | None, after: Contract) -> None:
        old = {s.token_hash for s in before.signers if s.token_hash} if before else set()
        new = {s.token_hash: s.id for s in after.signers if s.token_hash}
        for token_hash in old - set(new):
            self._undo.delete(self._t.contract_tokens, token_hash)
        for token_hash, signer_id in new.items():
            self._undo.set(
                self._t.contract_tokens, token_hash, (after.owner.tenant, after.id, signer_id)
            )

    def add(self, contract: Contract) -> Contract:
        self._scope(contract.owner)
        if contract.id in self._t.contracts:
            raise Conflict(f"contract id {contract.id} is already used")
        stored = attrs.evolve(contract, revision=1)
        self._undo.set(self._t.contracts, stored.id, stored)
        self._index_tokens(None, stored)
        self._due_at_once(stored)
        return stored

    def _due_at_once(self, contract: Contract) -> None:
        at = contract.created_at if contract.status in AWAITING_SIGNATURE else None
        self._undo.set(self._t.contract_due, contract.id, at)

    def get(self, contract_id: str) -> Contract:
        found = self._t.contracts.get(contract_id)
        if found is None or found.owner.tenant != self._uow.tenant:
            raise ContractNotFound(contract_id)
        return found

    def update(self, contract: Contract) -> Contract:
        current = self.get(contract.id)
        if current.revision != contract.revision:
            raise StaleWrite("contract", contract.id, contract.revision)
        stored = attrs.evolve(contract, revision=current.revision + 1)
        self._undo.set(self._t.contracts, stored.id, stored)
        self._index_tokens(current, stored)
        self._due_at_once(stored)
        return stored

    def for_owner(self, owner: Owner) -> Sequence[Contract]:
        self._scope(owner)
        return [c for c in self._t.contracts.values() if c.owner == owner]

    def page_for_owner(
        self, owner: Owner, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Contract]:
        found = sorted(self.for_owner(owner), key=lambda c: (c.created_at, c.id))
        return [c for c in found if after is None or (c.created_at, c.id) > after][:limit]

    def locate(self, token_hash: str) -> tuple[str | None, str, str] | None:
        return self._t.contract_tokens.get(token_hash)

    def append_event(self, event: ContractEvent) -> None:
        self.get(event.contract_id)
        chain = self._t.contract_events.setdefault(event.contract_id, [])
        if event.seq != len(chain):
            raise Conflict(
                f"event {event.seq} of contract {event.contract_id} is not the next one ({len(chain)})"
            )
        self._undo.append(chain, event)

    def events(self, contract_id: str) -> Sequence[ContractEvent]:
        self.get(contract_id)
        return list(self._t.contract_events.get(contract_id, ()))

    def last_event(self, contract_id: str) -> ContractEvent | None:
        self.get(contract_id)
        chain = self._t.contract_events.get(contract_id)
        return chain[-1] if chain else None

    def put_personal_data(self, data: PersonalData) -> None:
        self._undo.set(self._t.personal_data, data.commitment, data)

    def personal_data(self, commitments: Iterable[str]) -> Mapping[str, PersonalData]:
        return {c: self._t.personal_data[c] for c in commitments if c in self._t.personal_data}

    def erase_personal_data(self, commitments: Iterable[str]) -> None:
        for commitment in commitments:
            found = self._t.personal_data.get(commitment)
            if found is not None:
                self._undo.set(self._t.personal_data, commitment, found.erase())

    def put_attachment(self, contract_id: str, digest: str, content_type: str, data: bytes) -> None:
        self.get(contract_id)
        self._undo.set(self._t.attachments, (contract_id, digest), (content_type, bytes(data)))

    def attachment(self, contract_id: str, digest: str) -> tuple[str, bytes]:
        self.get(contract_id)
        found = self._t.attachments.get((contract_id, digest))
        if found is None:
            raise NotFound(f"contract {contract_id} has no attachment {digest}")
        return found

    def expired(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        found = [
            c
            for c in self._t.contracts.values()
            if c.owner.tenant == self._uow.tenant and not c.is_closed and c.expires_at <= now
        ]
        return sorted(found, key=lambda c: (c.expires_at, c.id))[:limit]

    def awaiting(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        found = [
            c
            for c in self._t.contracts.values()
            if c.owner.tenant == self._uow.tenant
            and c.status in AWAITING_SIGNATURE
            and c.expires_at > now
        ]
        return sorted(found, key=lambda c: (c.expires_at, c.id))[:limit]

    def due(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        found = [
            (at, c)
            for c in self.awaiting(now, len(self._t.contracts))
            if (at := self._t.contract_due.get(c.id)) is not None and at <= now
        ]
        return [c for _, c in sorted(found, key=lambda pair: (pair[0], pair[1].id))[:limit]]

    def schedule(self, contract_id: str, revision: int, at: datetime | None) -> bool:
        found = self._t.contracts.get(contract_id)
        if found is None or found.owner.tenant != self._uow.tenant or found.revision != revision:
            return False
        self._undo.set(self._t.contract_due, contract_id, at)
        return True


class _Provider(_Repository[str]):
    def seen(self, event_id: str) -> bool:
        return (self._uow.tenant, event_id) in self._t.provider_events

    def mark_seen(self, event_id: str, at: datetime) -> None:
        self._undo.set(self._t.provider_events, (self._uow.tenant, event_id), at)

    def link(self, external_id: str) -> ProviderLink | None:
        return self._t.provider_links.get((self._uow.tenant, external_id))

    def link_for_checkout(self, checkout_id: str) -> ProviderLink | None:
        for (tenant, _), link in self._t.provider_links.items():
            if tenant == self._uow.tenant and link.checkout_id == checkout_id:
                return link
        return None

    def put_link(self, link: ProviderLink) -> None:
        self._scope(link.owner)
        self._undo.set(self._t.provider_links, (self._uow.tenant, link.external_id), link)

    def add_command(self, command: ProviderCommand) -> None:
        self._scope(command.owner)
        for (tenant, _), existing in self._t.provider_commands.items():
            if tenant == self._uow.tenant and existing.idempotency_key == command.idempotency_key:
                raise Conflict(f"a provider command with key {command.idempotency_key} exists")
        self._undo.set(self._t.provider_commands, (self._uow.tenant, command.id), command)

    def command(self, command_id: str) -> ProviderCommand:
        found = self._t.provider_commands.get((self._uow.tenant, command_id))
        if found is None:
            raise NotFound(f"provider command {command_id} does not exist")
        return found

    def update_command(
        self, command: ProviderCommand, *, expected: ProviderCommand | None = None
    ) -> bool:
        stored = self.command(command.id)
        if expected is not None and (stored.status, stored.attempts) != (
            expected.status,
            expected.attempts,
        ):
            return False
        self._undo.set(self._t.provider_commands, (self._uow.tenant, command.id), command)
        return True

    def due_commands(self, now: datetime, limit: int = 500) -> Sequence[ProviderCommand]:
        due = [
            c
            for (tenant, _), c in self._t.provider_commands.items()
            if tenant == self._uow.tenant
            and c.status is CommandStatus.PENDING
            and c.next_attempt_at is not None
            and c.next_attempt_at <= now
        ]
        return sorted(due, key=lambda c: (c.next_attempt_at, c.created_at, c.id))[:limit]

    def open_commands(self, owner: Owner) -> Sequence[ProviderCommand]:
        self._scope(owner)
        found = [
            c
            for (tenant, _), c in self._t.provider_commands.items()
            if tenant == self._uow.tenant and c.owner == owner and c.is_open
        ]
        return sorted(found, key=lambda c: (c.created_at, c.id))

    def owners_with_open_commands(self, owners: Sequence[Owner]) -> set[Owner]:
        return {owner for owner in owners if self.open_commands(owner)}


class _Requests(_Repository[Owner]):
    def claim(self, request: KeyedRequest) -> KeyedRequest | None:
        self._scope(request.owner)
        found = self._t.requests.get((request.owner, request.key))
        if found is not None:
            return found
        self._undo.set(self._t.requests, (request.owner, request.key), request)
        return None

    def settle(self, owner: Owner, key: str, outcome: Mapping[str, Any]) -> None:
        self._scope(owner)
        claimed = self._t.requests[(owner, key)]
        self._undo.set(self._t.requests, (owner, key), attrs.evolve(claimed, outcome=outcome))

    def forget(self, before: datetime, limit: int = 10_000) -> int:
        old = [
            where
            for where, request in self._t.requests.items()
            if where[0].tenant == self._uow.tenant and request.at < before
        ][:limit]
        for where in old:
            self._undo.delete(self._t.requests, where)
        return len(old)


def _with(notification: Notification, **changes: Any) -> Notification:
    """A copy with a few delivery fields changed: the values were checked when the
    notification was made (all fields read at once, written through the slots, no
    checks)."""
    changed = object.__new__(Notification)
    values = list(_NOTIFICATION_VALUES(notification))
    for name, value in changes.items():
        values[_NOTIFICATION_INDEX[name]] = value
    for put, value in zip(_NOTIFICATION_SLOTS, values, strict=True):
        put(changed, value)
    return changed


_NOTIFICATION_FIELDS = tuple(a.name for a in attrs.fields(Notification))
_NOTIFICATION_VALUES = operator.attrgetter(*_NOTIFICATION_FIELDS)
_NOTIFICATION_INDEX = {name: i for i, name in enumerate(_NOTIFICATION_FIELDS)}
_NOTIFICATION_SLOTS = tuple(vars(Notification)[name].__set__ for name in _NOTIFICATION_FIELDS)
_SET_CLAIMED_BY = vars(Notification)["claimed_by"].__set__
_SET_CLAIMED_UNTIL = vars(Notification)["claimed_until"].__set__
_NO_ROWS: dict[str, Any] = {}


def _as_stored(notification: Notification, delivered_at: datetime | None) -> Notification:
    """What a reader gets: a copy of the store's record, its delivery written in."""
    if delivered_at is None:
        return _with(notification)
    return _with(notification, delivered_at=delivered_at, claimed_by=None, claimed_until=None)


_Rows = dict[str, tuple[int, Notification]]


def _repend(
    pending: dict[str, Notification], rows: _Rows, records: dict[str, Notification]
) -> None:
    """Put records back in the pending index, which stays in the order written."""
    pending.update(records)
    ordered = sorted(pending, key=lambda notification_id: rows[notification_id][0])
    again = {notification_id: pending[notification_id] for notification_id in ordered}
    pending.clear()
    pending.update(again)


def _filled(tables: dict[str | None, dict[str, Any]]) -> Iterator[str | None]:
    """The tenants whose part of ``tables`` holds anything."""
    return compress(tables.keys(), tables.values())


def _drop(pending: dict[str, Notification], notification_id: str) -> None:
    pending.pop(notification_id, None)


def _unclaim(rows: _Rows, pending: dict[str, Notification], claimed: list[Notification]) -> None:
    """Undo a claim. The records claimed where they lay were handed out, so they stay as
    the caller has them and unclaimed copies take their place (a record the claim had
    replaced is put back by its own undo step, which runs after this one)."""
    for n in claimed:
        order, record = rows[n.id]
        if record is n:
            unclaimed = _with(n, claimed_by=None, claimed_until=None)
            rows[n.id] = (order, unclaimed)
            if n.id in pending:
                pending[n.id] = unclaimed


def _undeliver(
    delivered: dict[str, datetime],
    ids: list[str],
    pending: dict[str, Notification],
    rows: _Rows,
    not_waiting: list[str],
) -> None:
    """Undo a delivery: the marks go, and what waited waits again (a record waiting is
    the one in the pending index)."""
    for notification_id in ids:
        del delivered[notification_id]
    again = {i: rows[i][1] for i in ids if i not in not_waiting}
    _repend(pending, rows, again)


class _Notifications(_Repository[str]):
    """The outbox, per tenant: each notification's record (id to order written and the
    record), the pending index (id to the record, in the order written) and the
    delivered marks (id to when). A record is the store's own — written as a copy, read
    as a copy — until a claim hands it out: then it is never changed again, and a later
    change (a release, a failed try, another claim after the lease ran out) stores a new
    record. So a claim takes a notification where it lies and a delivery marks it in one
    table, with one undo step per batch, and no caller ever sees a notification it holds
    change."""

    def _table(self, tables: dict[str | None, dict[str, V]]) -> dict[str, V]:
        """The tenant's part of ``tables``, made (and unmade on rollback) when missing."""
        found = tables.get(self._uow.tenant)
        if found is None:
            found = {}
            self._undo.set(tables, self._uow.tenant, found)
        return found

    def _rows(self) -> _Rows:
        return self._t.notifications.get(self._uow.tenant, _NO_ROWS)

    def _pending(self) -> dict[str, Notification]:
        return self._t.notification_pending.get(self._uow.tenant, _NO_ROWS)

    def _delivered_at(self, notification_id: str) -> datetime | None:
        return self._t.notifications_delivered.get(self._uow.tenant, _NO_ROWS).get(notification_id)

    def _replace(self, order: int, record: Notification) -> None:
        """Make ``record`` the notification's record, in the pending index too when it
        waits there (undone with the unit of work)."""
        self._undo.set(self._table(self._t.notifications), record.id, (order, record))
        pending = self._pending()
        if record.id in pending:
            self._undo.set(pending, record.id, record)

    def _put(self, notification: Notification, order: int) -> None:
        """Store a private copy of ``notification`` as the record, its delivery split off
        into the pending index or the delivered marks (undone with the unit of work)."""
        record = _with(notification, delivered_at=None)
        self._replace(order, record)
        rows = self._rows()
        pending = self._table(self._t.notification_pending)
        waiting = notification.delivered_at is None and notification.failed_at is None
        if waiting and record.id not in pending:
            later = bool(pending) and rows[next(reversed(pending))][0] > order
            pending[record.id] = record
            self._undo.steps.append(partial(_drop, pending, record.id))
            if later:
                _repend(pending, rows, {})
        elif not waiting and record.id in pending:
            left = {record.id: pending.pop(record.id)}
            self._undo.steps.append(partial(_repend, pending, rows, left))
        delivered = self._table(self._t.notifications_delivered)
        if notification.delivered_at != delivered.get(record.id):
            if notification.delivered_at is None:
                self._undo.delete(delivered, record.id)
            else:
                self._undo.set(delivered, record.id, notification.delivered_at)

    def add(self, notification: Notification) -> bool:
        owner = self._scope(notification.owner)
        if (owner, notification.key) in self._t.notification_keys:
            return False
        self._undo.set(self._t.notification_keys, (owner, notification.key), notification.id)
        self._t.notification_seq += 1  # never reused, so left as it is on rollback
        self._put(notification, self._t.notification_seq)
        return True

    def append(self, notification: Notification) -> None:
        self.add(notification)

    def get(self, notification_id: str) -> Notification:
        found = self._rows().get(notification_id)
        if found is None:
            raise NotFound(f"no notification {notification_id!r}")
        return _as_stored(found[1], self._delivered_at(notification_id))

    def claim(
        self, worker: str, now: datetime, until: datetime, limit: int = 100
    ) -> Sequence[Notification]:
        pending = self._pending()
        claimed: list[Notification] = []
        blocked: set[Owner] = set()
        left = limit
        take, claim_by, claim_until = claimed.append, _SET_CLAIMED_BY, _SET_CLAIMED_UNTIL
        # a claim changes no notification's membership of the pending index, so the
        # index is walked as it is, not copied
        for n in pending.values():
            if blocked and n.owner in blocked:
                continue
            if n.claimed_until is None and n.next_attempt_at is None:
                claim_by(n, worker)  # never claimed, never failed: the store's own, due
                claim_until(n, until)
            else:
                again = self._claimed_again(n, worker, now, until)
                if again is None:
                    blocked.add(n.owner)  # its later ones wait for it
                    continue
                n = again
            take(n)
            left -= 1
            if not left:
                break
        if claimed:
            self._undo.steps.append(partial(_unclaim, self._rows(), pending, claimed))
        return claimed

    def _claimed_again(
        self, n: Notification, worker: str, now: datetime, until: datetime
    ) -> Notification | None:
        """A notification claimed or tried before, claimed for ``worker`` if it is due
        (``None``: backing off, or another's claim holds): where it lies when it is the
        store's own (let go), else as a new record (handed out before)."""
        if (n.next_attempt_at is not None and n.next_attempt_at > now) or (
            n.claimed_until is not None and n.claimed_until > now
        ):
            return None
        if n.claimed_by is None:
            _SET_CLAIMED_BY(n, worker)
            _SET_CLAIMED_UNTIL(n, until)
            return n
        again = _with(n, claimed_by=worker, claimed_until=until)
        self._replace(self._rows()[n.id][0], again)
        return again

    def delivered(self, ids: Sequence[str], worker: str, now: datetime) -> int:
        rows = self._rows()
        marks = self._t.notifications_delivered.get(self._uow.tenant)
        pending = self._pending()
        held: list[str] = []
        not_waiting: list[str] = []
        for notification_id in ids:
            waiting = pending.get(notification_id)  # the record, neither delivered nor failed
            if waiting is not None:
                if waiting.claimed_by != worker:
                    continue
                del pending[notification_id]
            elif self._holds(notification_id, worker):
                not_waiting.append(notification_id)
            else:
                continue
            if marks is None:
                marks = self._table(self._t.notifications_delivered)
            marks[notification_id] = now
            held.append(notification_id)
        if marks is not None and held:
            undo = partial(_undeliver, marks, held, pending, rows, not_waiting)
            self._undo.steps.append(undo)
        return len(held)

    def _holds(self, notification_id: str, worker: str) -> bool:
        """Whether ``worker`` holds the notification: its claim, and no delivery since
        (which let go of it, the record keeping its last holder)."""
        entry = self._rows().get(notification_id)
        return (
            entry is not None
            and entry[1].claimed_by == worker
            and self._delivered_at(notification_id) is None
        )

    def release(self, ids: Sequence[str], worker: str) -> None:
        rows = self._rows()
        for notification_id in ids:
            if self._holds(notification_id, worker):
                order, n = rows[notification_id]
                self._replace(order, _with(n, claimed_until=None, claimed_by=None))

    def update(self, notification: Notification, worker: str | None) -> bool:
        found = self._rows().get(notification.id)
        if found is None:
            raise NotFound(f"no notification {notification.id!r}")
        if worker is not None and not self._holds(notification.id, worker):
            return False
        self._put(notification, found[0])
        return True

    def _mine(self) -> list[tuple[int, Notification]]:
        """The tenant's notifications as readers see them, in the order written."""
        delivered = self._t.notifications_delivered.get(self._uow.tenant, _NO_ROWS)
        return sorted(
            (order, _as_stored(n, delivered.get(i))) for i, (order, n) in self._rows().items()
        )

    def listed(
        self, owner: Owner | None = None, failed: bool = False, limit: int = 50
    ) -> Sequence[Notification]:
        if owner is not None:
            self._scope(owner)
        found = [
            n
            for _, n in reversed(self._mine())
            if (owner is None or n.owner == owner) and (not failed or n.failed_at is not None)
        ]
        return found[:limit]

    def purge(self, before: datetime, limit: int = 10_000) -> int:
        rows = self._rows()
        delivered = self._t.notifications_delivered.get(self._uow.tenant, _NO_ROWS)
        old = sorted((rows[i][0], i) for i, at in delivered.items() if at < before)[:limit]
        for _, notification_id in old:
            n = rows[notification_id][1]
            self._undo.delete(rows, notification_id)
            self._undo.delete(delivered, notification_id)
            self._undo.delete(self._t.notification_keys, (n.owner, n.key))
        return len(old)


class _Migrations(_Repository[str]):
    def _key(self, migration_id: str) -> tuple[str | None, str]:
        return (self._uow.tenant, migration_id)

    def add(self, migration: Migration, items: Sequence[MigrationItem]) -> None:
        key = self._key(migration.id)
        if key in self._t.migrations:
            raise StorageError(f"migration id {migration.id} is already used")
        self._undo.set(self._t.migrations, key, migration)
        for item in items:
            self._scope(item.owner)
            self._undo.set(self._t.migration_items, (*key, item.seq), item)
        self._undo.set(self._t.migration_sizes, key, len(items))
        self._undo.set(self._t.migration_cursors, key, 1)

    def get(self, migration_id: str) -> Migration:
        found = self._t.migrations.get(self._key(migration_id))
        if found is None:
            raise MigrationNotFound(migration_id)
        return found

    def list(self, limit: int = 100) -> Sequence[Migration]:
        mine = [m for (t, _), m in self._t.migrations.items() if t == self._uow.tenant]
        mine.sort(key=lambda m: (m.created_at, m.id), reverse=True)
        return mine[:limit]

    def set_status(
        self,
        migration_id: str,
        expected: Iterable[MigrationStatus],
        status: MigrationStatus,
        at: datetime,
    ) -> bool:
        found = self.get(migration_id)
        if found.status not in set(expected):
            return False
        changed = attrs.evolve(found, status=status, updated_at=at)
        self._undo.set(self._t.migrations, self._key(migration_id), changed)
        return True

    def subscribers(self, plan_key: str, versions: Iterable[int]) -> Sequence[Subscription]:
        wanted = set(versions)
        found = []
        for owner, ids in self._t.subscriptions_by_owner.items():
            if owner.tenant != self._uow.tenant or not ids:
                continue
            sub = self._t.subscriptions[ids[-1]]
            if not sub.is_terminal and sub.plan_key == plan_key and sub.plan_version in wanted:
                found.append(sub)
        order = {sub_id: n for n, sub_id in enumerate(self._t.subscriptions)}
        return sorted(found, key=lambda sub: order[sub.id])

    def _all(self, migration_id: str) -> Iterator[MigrationItem]:
        key = self._key(migration_id)
        for seq in range(1, self._t.migration_sizes.get(key, 0) + 1):
            yield self._t.migration_items[(*key, seq)]

    def items(
        self,
        migration_id: str,
        *,
        after: int = 0,
        limit: int = 1000,
        status: str | None = None,
    ) -> Sequence[MigrationItem]:
        found = []
        for item in self._all(migration_id):
            if item.seq > after and (status is None or item.status.value == status):
                found.append(item)
                if len(found) >= limit:
                    break
        return found

    def claim(self, migration_id: str, limit: int) -> Sequence[MigrationItem]:
        # a memory unit of work holds the store's lock: nobody else claims meanwhile
        key = self._key(migration_id)
        size = self._t.migration_sizes.get(key, 0)
        seq = self._t.migration_cursors.get(key, 1)
        while seq <= size and self._t.migration_items[(*key, seq)].status is not _PENDING:
            seq += 1
        if seq != self._t.migration_cursors.get(key, 1):
            self._undo.set(self._t.migration_cursors, key, seq)
        found: list[MigrationItem] = []
        while seq <= size and len(found) < limit:
            item = self._t.migration_items[(*key, seq)]
            if item.status is _PENDING:
                found.append(item)
            seq += 1
        return found

    def settle(self, item: MigrationItem) -> None:
        key = (*self._key(item.migration_id), item.seq)
        if key not in self._t.migration_items:
            raise MigrationNotFound(item.migration_id)
        self._undo.set(self._t.migration_items, key, item)

    def settle_many(self, items: Sequence[MigrationItem]) -> None:
        for item in items:
            self.settle(item)

    def counts(self, migration_id: str) -> Mapping[str, int]:
        found: dict[str, int] = {}
        for item in self._all(migration_id):
            found[item.status.value] = found.get(item.status.value, 0) + 1
        return found

    def cancel_pending(self, migration_id: str, at: datetime) -> int:
        key = self._key(migration_id)
        count = 0
        for item in list(self._all(migration_id)):
            if item.status is _PENDING:
                canceled = attrs.evolve(item, status=ItemStatus.CANCELED, done_at=at)
                self._undo.set(self._t.migration_items, (*key, item.seq), canceled)
                count += 1
        return count

    def price_locks(self, subscription_id: str) -> Sequence[PriceLock]:
        found = []
        for (tenant, migration_id, _), item in self._t.migration_items.items():
            if tenant != self._uow.tenant or item.subscription_id != subscription_id:
                continue
            migration = self._t.migrations[(tenant, migration_id)]
            lock = _price_lock(migration, item)
            if lock is not None:
                found.append(lock)
        return found


_PENDING = ItemStatus.PENDING
_LOCKING = (ItemStatus.MOVED, ItemStatus.SCHEDULED)


def _price_lock(migration: Migration, item: MigrationItem) -> PriceLock | None:
    """The price lock a moved (or scheduled: from its instant) item carries, if its
    migration set one."""
    if item.status not in _LOCKING or migration.price_lock_until is None or item.done_at is None:
        return None
    return PriceLock(
        item.subscription_id,
        migration.plan_key,
        item.moved_from if item.moved_from is not None else item.from_version,
        migration.to_version,
        item.done_at,
        migration.price_lock_until,
        migration.id,
    )


class _Invoices(_Repository[str]):
    def get(self, invoice_id: str) -> Invoice:
        found = self._t.invoices.get(invoice_id)
        if found is None or found.owner.tenant != self._uow.tenant:
            raise InvoiceNotFound(invoice_id)
        return found

    def for_period(self, owner: Owner, period_start: datetime) -> Invoice | None:
        for invoice in self.list(owner):
            if invoice.period is not None and invoice.period.start == period_start:
                return invoice
        return None

    def for_periods(
        self, wanted: Sequence[tuple[Owner, datetime]]
    ) -> Mapping[tuple[Owner, datetime], Invoice]:
        found = {(owner, start): self.for_period(owner, start) for owner, start in wanted}
        return {key: invoice for key, invoice in found.items() if invoice is not None}

    def list(self, owner: Owner) -> Sequence[Invoice]:
        ids = self._t.invoices_by_owner.get(self._scope(owner), ())
        return [self._t.invoices[i] for i in ids]

    def open_due(self, until: datetime, limit: int = 500) -> Sequence[Invoice]:
        found = [
            i
            for i in self._t.invoices.values()
            if i.owner.tenant == self._uow.tenant
            and i.kind is InvoiceKind.INVOICE
            and i.status is InvoiceStatus.OPEN
            and i.due_at <= until
        ]
        return sorted(found, key=lambda i: i.due_at)[:limit]

    def next_number(self, prefix: str) -> int:
        key = (self._uow.tenant, prefix)
        number = self._t.invoice_counters.get(key, 0) + 1
        self._undo.set(self._t.invoice_counters, key, number)
        return number

    def add(self, invoice: Invoice) -> Invoice:
        owner = self._scope(invoice.owner)
        if invoice.period is not None and self.for_period(owner, invoice.period.start):
            raise InvoiceExists(owner, invoice.period.start)
        if invoice.id in self._t.invoices:
            raise StorageError(f"invoice id {invoice.id} is already used")
        self._undo.set(self._t.invoices, invoice.id, invoice)
        ids = self._t.invoices_by_owner.get(owner, ())
        self._undo.set(self._t.invoices_by_owner, owner, (*ids, invoice.id))
        return invoice

    def add_many(self, invoices: Sequence[Invoice]) -> Sequence[Invoice]:
        return [self.add(invoice) for invoice in invoices]

    def set_payment(self, invoice: Invoice) -> Invoice:
        stored = self.get(invoice.id)
        updated = attrs.evolve(
            stored,
            status=invoice.status,
            paid_at=invoice.paid_at,
            payment_reference=invoice.payment_reference,
            voided_at=invoice.voided_at,
            void_reason=invoice.void_reason,
        )
        self._undo.set(self._t.invoices, invoice.id, updated)
        return updated


R = TypeVar("R")


class _OnFirstUse(Generic[R]):
    """A repository of the unit of work, made the first time it is asked for: most units
    of work use one or two of the fourteen."""

    def __init__(self, make: Callable[[_MemoryUnitOfWork], R]) -> None:
        self._make = make
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, uow: _MemoryUnitOfWork, owner: type | None = None) -> R:
        made = self._make(uow)
        uow.__dict__[self._name] = made
        return made


class _MemoryUnitOfWork:
    plans = _OnFirstUse(_Plans)
    subscriptions = _OnFirstUse(_Subscriptions)
    overrides = _OnFirstUse(_Overrides)
    audit = _OnFirstUse(_Audit)
    usage = _OnFirstUse(_Usage)
    seats = _OnFirstUse(_Seats)
    contracts = _OnFirstUse(_Contracts)
    provider = _OnFirstUse(_Provider)
    requests = _OnFirstUse(_Requests)
    notifications = _OnFirstUse(_Notifications)
    migrations = _OnFirstUse(_Migrations)
    invoices = _OnFirstUse(_Invoices)
    revisions = _OnFirstUse(_Revisions)
    feed = _OnFirstUse(_Feed)

    def __init__(self, store: MemoryStore, tenant: str | None) -> None:
        self.tenant = tenant
        self.tables = store.tables
        self.undo = _Undo()
        self._lock = store.lock
        self._open = False
        self.bumped: dict[Owner, int] = {}
        self.noted: dict[Owner | None, ChangeKind] = {}
        self.committed_revision: int | None = None
        self.effective_at: datetime | None = None

    def written_at(self) -> datetime:
        """The instant the history dates this unit of work's writes with."""
        return self.effective_at or _wall_now(UTC)

    def __enter__(self) -> _MemoryUnitOfWork:
        self._lock.acquire()
        self._open = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._open:
                self.rollback()
        finally:
            self._open = False
            self._lock.release()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        mark = len(self.undo.steps)
        bumped, noted = dict(self.bumped), dict(self.noted)
        try:
            yield
        except BaseException:
            while len(self.undo.steps) > mark:
                self.undo.steps.pop()()
            self.bumped, self.noted = bumped, noted
            raise

    def commit(self) -> None:
        self.committed_revision = self.feed.write()
        self.undo.steps.clear()
        self.bumped.clear()
        self.noted.clear()

    def when_durable(self, callback: Callable[[], None]) -> None:
        callback()

    def rollback(self) -> None:
        self.undo.replay()


_wall_now = datetime.now


class MemoryStore:
    """Everything in dictionaries of this process; not shared between processes."""

    def __init__(self) -> None:
        self.tables = _Tables()
        """Everything stored, as plain dicts and lists; tests may read it, nothing should
        write it."""
        self.lock = threading.RLock()
        """Serialises units of work, as a database would."""

    def unit_of_work(
        self, tenant: str | None, join: object | None = None, *, read_only: bool = False
    ) -> _MemoryUnitOfWork:
        if join is not None:
            raise InvalidInput("join", "the memory store cannot join another transaction", join)
        return _MemoryUnitOfWork(self, tenant)

    def consume_inline(
        self, consumption: Consumption, wall: datetime | None = None
    ) -> tuple[Counter | None, UsageRecord | None, int | None]:
        """`InlineConsumption.consume_inline`: one consumption as a whole unit of work,
        under the store's lock."""
        with self.lock:
            t = self.tables
            after, earlier, _, _ = _charge(t, consumption)
            if after is None:
                return None, earlier, None
            owner = consumption.record.owner
            seq = t.next_seq
            t.next_seq = seq + 1
            t.changes.append(
                (seq, owner.tenant, owner.kind, owner.id, _USAGE, wall or _wall_now(UTC))
            )
            return after, None, seq

    def dump(self) -> dict[str, Any]:
        """Everything stored, as comparable data: tests compare dumps to prove a failed
        call changed nothing."""
        with self.lock:
            return copy.deepcopy(vars(self.tables))

    def read_changes(self, after: int, missing: tuple[int, ...] = ()) -> FeedPage:
        with self.unit_of_work(None) as uow:
            return uow.feed.read(after, missing)

    def feed_head(self) -> int:
        with self.lock:
            return self.tables.next_seq - 1

    def change_hints(self) -> list[Any]:
        return []

    shared = False
    """One process only: nothing else writes to it."""

    def tenants(self) -> Sequence[str | None]:
        with self.lock:
            found = {o.tenant for o in self.tables.subscriptions_by_owner}
            found.update(o.tenant for o in self.tables.overrides)
            found.update(r.owner.tenant for r in self.tables.reservations.values())
            found.update(c.owner.tenant for c in self.tables.contracts.values())
            found.update(owner.tenant for owner, _ in self.tables.requests)
            found.update(_filled(self.tables.notifications))
            found.update(
                c.owner.tenant for c in self.tables.provider_commands.values() if c.is_open
            )
        return sorted(found, key=lambda t: (t is not None, t or ""))


if TYPE_CHECKING:
    from entitlements.ports import Store

    def _is_a_store(store: MemoryStore) -> Store:
        return store
