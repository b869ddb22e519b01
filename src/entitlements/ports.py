"""The ports: what the application needs from storage, time and the outside world.

This module is the one list of seams: every protocol the library is wired through lives
here, and so does every optional fast path a store or clock may offer (a store either
implements `InlineConsumption` or it does not; nothing is found by probing attributes).

Adapters implement these (``entitlements.adapters.memory``, ``entitlements.adapters.sql``);
``entitlements.testing.contract`` holds the test suite every adapter must pass, so a third
party's store can prove itself the same way ours do.

Every repository works inside one unit of work, scoped to one tenant: it neither reads
nor writes another tenant's rows. The plan catalog belongs to the host product and is
shared by all tenants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from entitlements.domain.actor import Actor
from entitlements.domain.audit import AuditEvent
from entitlements.domain.billing import Checkout, ProviderLink, ProviderSubscription
from entitlements.domain.change import ChangeKind, FeedPage
from entitlements.domain.contracts.contract import Contract, PersonalData
from entitlements.domain.contracts.events import ContractEvent
from entitlements.domain.invoice import Invoice
from entitlements.domain.migration import (
    Migration,
    MigrationItem,
    MigrationStatus,
    PriceLock,
)
from entitlements.domain.notification import Notification
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.domain.provider_commands import ProviderCommand
from entitlements.domain.requests import KeyedRequest
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.domain.usage import (
    Consumption,
    Counter,
    CounterAddition,
    Reservation,
    SeatAssignment,
    UsageRecord,
)

__all__ = [
    "AuditLog",
    "Authorizer",
    "BadTokenLimit",
    "ChangeChannel",
    "ChangeFeed",
    "ChangeHint",
    "Clock",
    "ContractRepository",
    "EventListener",
    "FeedSource",
    "InlineConsumption",
    "InvoiceDelivery",
    "InvoiceRepository",
    "MigrationRepository",
    "NotificationRepository",
    "OverrideRepository",
    "PaymentProvider",
    "PlanRepository",
    "ProviderRepository",
    "RequestRepository",
    "RevisionRepository",
    "SeatRepository",
    "Store",
    "SubscriptionRepository",
    "Telemetry",
    "TimestampClock",
    "UnitOfWork",
    "UsageRepository",
]


class Clock(Protocol):
    """Where the library reads the time; pass `ManualClock` in tests so trials end when the
    test says."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@runtime_checkable
class TimestampClock(Protocol):
    """A clock that can also say the time as epoch seconds: the warm path compares
    floats, and reading one costs a fraction of building a datetime. A fast path: a
    clock without it is read through ``now()``."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    def timestamp(self) -> float:
        """The same instant as ``now()``, as seconds since the epoch."""
        ...


class Authorizer(Protocol):
    """Decides who may change what; the default allows every actor, hosts plug their own
    rules in (`entitlements.service.authorization` ships rule sets)."""

    def authorize(
        self, actor: Actor, action: str, *, owner: Owner | None, subject: Any, uow: Any
    ) -> None:
        """Return if ``actor`` may perform ``action`` (``"subscription.cancel"``...) on
        ``owner``'s ``subject``; raise `NotAuthorized` otherwise. ``uow`` gives read access
        to stored state for rules that need it."""
        ...


class Telemetry(Protocol):
    """Traces and counts units of work; `entitlements.telemetry.OpenTelemetry` is the
    shipped one."""

    def unit_of_work(self, tenant: str | None) -> AbstractContextManager[Any]:
        """Wrap one unit of work; yields a handle passed back to `committed`."""
        ...

    def committed(self, handle: Any, events: list[AuditEvent]) -> None:
        """Called once the unit of work committed, with the audit events it recorded."""
        ...


class ChangeHint(Protocol):
    """A push from the engine (or a channel) that something may have changed."""

    def wait(self, timeout: float) -> bool:
        """Return ``True`` as soon as a change may have been committed, ``False`` after
        ``timeout`` seconds without one."""
        ...

    def close(self) -> None:
        """Stop listening; release the connection."""
        ...


@runtime_checkable
class ChangeChannel(Protocol):
    """A channel on which processes announce the change-feed positions they commit, so
    that the others' followers wake early (`entitlements.adapters.redis_hints.RedisChannel`).
    A hint only: the change feed stays the truth."""

    def announce(self, revision: int) -> None:
        """Tell the other processes that ``revision`` committed; never raises."""
        ...

    def subscribe(self) -> ChangeHint:
        """A subscription that wakes this process's follower."""
        ...


class FeedSource(Protocol):
    """Where a follower reads the change feed from, outside any unit of work (every
    `Store` is one)."""

    def read_changes(self, after: int, missing: tuple[int, ...] = ()) -> FeedPage:
        """The entries after ``after``, and those of ``missing`` that have arrived since."""
        ...

    def feed_head(self) -> int:
        """The last position handed out."""
        ...


class EventListener(Protocol):
    """Called after a unit of work commits, once per audit event it recorded; the host
    forwards them (webhooks, metrics, logs). A listener's failure never undoes the
    committed change."""

    def __call__(self, event: AuditEvent, /) -> None: ...


class PlanRepository(Protocol):
    """Plans and their versions (plans are global; they are not scoped by tenant)."""

    def get(self, key: str, version: int | None = None) -> Plan:
        """The plan at ``version`` (default: latest), with its current name and status;
        raises `UnknownPlan`."""
        ...

    def find(self, key: str) -> Plan | None:
        """The latest version of ``key``, or ``None`` when there is none."""
        ...

    def get_many(self, wanted: Sequence[tuple[str, int | None]]) -> list[Plan]:
        """`get` of each ``(key, version)``, in order, in one read (a plan change needs the
        plan it leaves and the one it moves to); raises `UnknownPlan` as `get` would."""
        ...

    def list(self) -> Sequence[Plan]:
        """Latest version of every plan, ordered by key."""
        ...

    def versions(self, key: str) -> Sequence[Plan]:
        """Every stored version of ``key``, oldest first."""
        ...

    def any_priced(self) -> bool:
        """Whether any version of any plan carries a price, charges or payment terms:
        while none does, no period owes anything but a contract's amount, and ending a
        period needs no invoice draft."""
        ...

    def add(self, plan: Plan) -> Plan:
        """Store a new plan at version 1; raises `PlanExists`."""
        ...

    def update(self, plan: Plan) -> Plan:
        """Store plan-level fields (name, status, owner kinds) and, when ``plan.version``
        is one more than the latest, its terms as a new version. Raises `StaleWrite` unless
        ``plan.revision`` is the stored revision; returns the plan with the new revision."""
        ...


class SubscriptionRepository(Protocol):
    """Subscriptions, current and ended, of the unit of work's tenant."""

    def current(
        self, owner: Owner, *, with_plans: Sequence[tuple[str, int | None]] = ()
    ) -> Subscription | None:
        """The owner's most recent subscription (live or ended), if any. ``with_plans``:
        plan versions (``None``: the latest) the caller reads next; under the owner's
        terms lock a store may read them, and the one the subscription holds, with it."""
        ...

    def current_many(
        self, owners: Sequence[Owner], *, with_plans: Sequence[tuple[str, int | None]] = ()
    ) -> Mapping[Owner, Subscription]:
        """`current` for each of ``owners`` at once (one read, not one per owner): those
        with no subscription are left out. Under the owners' terms locks a store may read
        their overrides, and the ``with_plans`` versions, with them."""
        ...

    def get(self, subscription_id: str) -> Subscription:
        """Raises `NotFound` (also for another tenant's subscription)."""
        ...

    def read_ahead(self, subscription_ids: Sequence[str]) -> None:
        """Read these subscriptions now, together (one statement where the store can): the
        next `get` of each answers from that read, unless this unit of work wrote it
        meanwhile. A job acting on a group of claimed owners reads the group at once."""
        ...

    def history(self, owner: Owner) -> Sequence[Subscription]:
        """Every subscription the owner ever had, oldest first."""
        ...

    def history_page(
        self, owner: Owner, after: int | None, limit: int
    ) -> Sequence[tuple[int, Subscription]]:
        """Up to ``limit`` of the owner's subscriptions after position ``after`` (``None``:
        from the first), oldest first, each with its position (a key that only grows)."""
        ...

    def at(self, owner: Owner, when: datetime) -> Subscription | None:
        """The owner's subscription as it was stored at ``when`` (``None``: it had none):
        of the subscriptions it had by then, the one created last, as its last write at
        or before ``when`` left it (the last one written, among writes of one instant).
        Time is not applied: the caller reads it with `entitlements.domain.due.as_of`.

        Every `add` and `update` appends to the history this reads, dated with the unit
        of work's `UnitOfWork.effective_at`; nothing removes from it."""
        ...

    def states(
        self, owner: Owner, start: datetime, end: datetime
    ) -> Sequence[tuple[datetime, Subscription | None]]:
        """The owner's subscription as `at` reads it at ``start``, then at each later
        instant before ``end`` at which a write took effect, in order: the stretches an
        invoice cuts a period into (time is not applied)."""
        ...

    def states_many(
        self, wanted: Sequence[tuple[Owner, datetime, datetime]]
    ) -> Sequence[Sequence[tuple[datetime, Subscription | None]]]:
        """`states` for each ``(owner, start, end)`` of ``wanted``, in order, read
        together where the store can (a group of invoices drafted at once)."""
        ...

    def add(self, subscription: Subscription) -> Subscription:
        """Store a new subscription; raises `SubscriptionExists` if the owner has a live one."""
        ...

    def update(self, subscription: Subscription) -> Subscription:
        """Raises `StaleWrite` unless ``subscription.revision`` is the stored revision;
        returns it with the new revision."""
        ...

    def update_many(self, subscriptions: Sequence[Subscription]) -> Sequence[Subscription]:
        """`update` each of ``subscriptions`` (one write where the store can); raises
        `StaleWrite` unless every one is at its stored revision, and then none is
        updated once the unit of work rolls back."""
        ...

    def due(
        self,
        now: datetime,
        limit: int = 500,
        statuses: frozenset[SubscriptionStatus] | None = None,
    ) -> Sequence[Subscription]:
        """Live subscriptions that time may have changed by ``now``, earliest change
        first (ties in the order they were created); only those stored with one of
        ``statuses`` when given (an index range each, so a scan for trials ending reads
        trials, not every renewal in the window)."""
        ...

    def due_ids(self, now: datetime, limit: int = 500) -> Sequence[tuple[str, Owner]]:
        """The id and owner of each of `due`'s subscriptions (same order, no ``statuses``):
        what a job that reads each again under its owner's lock needs of the listing."""
        ...

    def count_on_plans(self, plan_keys: Iterable[str], exclude_owner: Owner | None = None) -> int:
        """How many owners of this tenant hold a live subscription on one of these plans."""
        ...

    def status_counts(self, now: datetime) -> tuple[Mapping[str, int], Sequence[Subscription]]:
        """How many owners of this tenant have their most recent subscription stored in
        each status (statuses no owner is in may be left out or be 0), and those most
        recent subscriptions whose stored next change is at or before ``now`` (the ones
        time may have moved since they were stored). Exact as of the transaction, at a
        cost that does not grow with the tenant's owners: the console's front page."""
        ...

    def fold_status_counts(self, limit: int) -> int:
        """Let `status_counts` read less: replace up to ``limit`` of what this tenant's
        counts are kept as by fewer rows that say the same (the sweep calls it). How many
        were replaced; a store whose counts are not kept as changes returns 0."""
        ...

    def search(
        self, text: str | None, statuses: frozenset[str] | None, limit: int = 100
    ) -> Sequence[Subscription]:
        """Each owner's most recent subscription, newest first: only those whose status is
        in ``statuses`` (when given) and whose owner id, external id or plan key contains
        ``text`` (case-insensitive, when given). Staff consoles list owners with it."""
        ...

    def search_page(
        self, text: str | None, statuses: frozenset[str] | None, before: int | None, limit: int
    ) -> tuple[Sequence[tuple[int, Subscription]], int | None]:
        """`search` a page at a time: up to ``limit`` owners' latest subscriptions, newest
        first, each with its position, those before position ``before`` (``None``: from
        the newest); and, when a text search stopped looking before the page was full
        (it reads a bounded number of rows), the position it stopped at (``None``: it
        looked at every row before ``before``)."""
        ...


class OverrideRepository(Protocol):
    """The overrides of the unit of work's tenant."""

    def for_owner(self, owner: Owner) -> Sequence[Override]:
        """Every override set for ``owner``, expired ones included until the sweep removes
        them."""
        ...

    def put(self, override: Override) -> Override | None:
        """Set the owner's override for (kind, key); returns the one it replaced."""
        ...

    def remove(self, owner: Owner, kind: OverrideKind, key: str) -> Override:
        """Raises `OverrideNotFound`."""
        ...

    def at(self, owner: Owner, when: datetime) -> Sequence[Override]:
        """The overrides set for ``owner`` at ``when``, as `for_owner` would have answered
        then (ordered by kind and key; expired ones included until their removal), also
        those removed since. `put`, `remove` and `remove_expired` each append to the
        history this reads, dated with the unit of work's `UnitOfWork.effective_at`."""
        ...

    def remove_expired(
        self, owner: Owner, kind: OverrideKind, key: str, now: datetime
    ) -> Override | None:
        """Remove the override only if it is still expired at ``now`` (the sweep's removal:
        one that staff renewed or removed meanwhile is left alone, ``None``)."""
        ...

    def expired(self, now: datetime, limit: int = 500) -> Sequence[Override]:
        """Overrides expired by ``now``, earliest expiry first, then by owner kind, owner
        id, kind and key."""
        ...


class UsageRepository(Protocol):
    """Counters per (owner, metric, period), the ledger of accepted usage, and
    reservations. ``add`` is the one write that must be atomic against concurrent writers
    (a conditional update on SQL): it is where limits, terms revisions and reservation
    expiries are enforced, by the store, against the latest committed row."""

    def counter(self, owner: Owner, metric: str, period_start: datetime) -> Counter:
        """The counter, zero if nothing was ever recorded."""
        ...

    def counters(self, owner: Owner, metric: str) -> Sequence[Counter]:
        """Every period's counter of a metric, oldest first (usage history)."""
        ...

    def counters_page(
        self, owner: Owner, metric: str, after: datetime | None, limit: int
    ) -> Sequence[Counter]:
        """Up to ``limit`` of the metric's counters of periods starting after ``after``
        (``None``: from the first), oldest first."""
        ...

    def ensure(self, owner: Owner, metric: str, period_start: datetime, revision: int) -> None:
        """Create the counter if missing, and stamp it with terms ``revision`` (the caller
        holds the owner's revision lock, so that revision is the one in force)."""
        ...

    def add(self, addition: CounterAddition) -> Counter | None:
        """Add the addition's ``used`` and ``reserved`` (either may be negative) and
        return the new counter. Return ``None`` and change nothing if a part would go
        below zero, or — when the total grows — it would pass ``ceiling``; if
        ``revision`` is given and the counter does not exist or carries another terms
        revision; if ``now`` is given and a held reservation counted in it expired by then
        (settle those first); if ``fallback`` (plan key, version) is given and that is no
        longer the plan's latest version. Without ``revision``, a missing counter is
        created first. ``hold_until`` is the expiry of units being reserved (kept as
        ``held_until``)."""
        ...

    def set_used(
        self,
        owner: Owner,
        metric: str,
        period_start: datetime,
        used: int,
        *,
        revision: int | None = None,
    ) -> Counter | None:
        """Set ``used``; with ``revision``, only on a counter stamped with it (else
        ``None``)."""
        ...

    def add_record(self, record: UsageRecord) -> UsageRecord | None:
        """Store the record, or return the already stored one with the same idempotency
        key for this owner (and store nothing). Two writers racing on one key both get
        an answer: the second waits for the first and gets its record."""
        ...

    def consume(self, consumption: Consumption) -> tuple[Counter | None, UsageRecord | None]:
        """Store the consumption's record and add its amount to the counter of its
        period, as `add` does under the same conditions. Returns ``(counter after,
        None)``; ``(counter or None, earlier record)`` when the key was recorded already
        (nothing changes; the counter, if given, is the current one of the record's
        period); ``(None, None)`` when the counter refused (nothing is stored: the caller
        decides under the owner's lock)."""
        ...

    def recorded(
        self, keys: Sequence[tuple[Owner, str]]
    ) -> Mapping[tuple[Owner, str], UsageRecord]:
        """The stored records of these (owner, idempotency key) pairs, where there are."""
        ...

    def counters_of(
        self, keys: Sequence[tuple[Owner, str, datetime]], *, lock: bool = False
    ) -> Mapping[tuple[Owner, str, datetime], tuple[Counter, int]]:
        """The existing counters of these (owner, metric, period) with the terms revision
        each is stamped with, in one read; with ``lock``, locked until the unit of work
        ends."""
        ...

    def add_records(self, records: Sequence[UsageRecord]) -> None:
        """Store records whose keys the caller found unrecorded; raises `Conflict` if
        another writer recorded one of them meanwhile."""
        ...

    def add_counted_many(self, additions: Sequence[CounterAddition]) -> bool:
        """`add` each addition under its conditions (one round trip where the store can);
        ``True`` only when every one matched. The caller read the counters locked and
        rolls the unit of work back on ``False``, so a store may stop at the first miss."""
        ...

    def remove_record(self, owner: Owner, record_id: str) -> None:
        """Take back a record this unit of work just stored (its consumption was refused)."""
        ...

    def records(self, owner: Owner, metric: str, period_start: datetime) -> Sequence[UsageRecord]:
        """Oldest first."""
        ...

    def forget_keys(self, before: datetime, limit: int = 10_000) -> int:
        """Clear the idempotency keys of this tenant's records made before ``before`` and of
        reservations settled before it (the records stay: only the key is forgotten, so a
        retry that late counts again); returns how many keys, at most ``limit``."""
        ...

    def add_reservation(self, reservation: Reservation) -> Reservation | None:
        """Store it, or return the stored one with the same key for this owner."""
        ...

    def reservation(self, owner: Owner, reservation_id: str) -> Reservation:
        """Raises `NotFound`."""
        ...

    def settle_reservation(self, reservation: Reservation) -> bool:
        """Store the settled reservation (committed, released or expired) if the stored
        one is still held; ``False`` (nothing written) if another call settled it."""
        ...

    def refresh_held_until(self, owner: Owner, metric: str, period_start: datetime) -> None:
        """Recompute the counter's ``held_until`` from the reservations still held."""
        ...

    def expired_held(
        self, owner: Owner, metric: str, period_start: datetime, now: datetime
    ) -> Sequence[Reservation]:
        """Reservations of the counter still held although they expired by ``now``."""
        ...

    def held_reservations_due(self, now: datetime, limit: int = 500) -> Sequence[Reservation]:
        """Held reservations whose time ran out by ``now``, earliest first."""
        ...


class SeatRepository(Protocol):
    """Named seat assignments per owner and pool."""

    def assigned(self, owner: Owner, pool: str) -> Sequence[SeatAssignment]:
        """Ordered by member id."""
        ...

    def add(self, assignment: SeatAssignment) -> None:
        """Raises `Conflict` if the member already holds a seat of the pool."""
        ...

    def remove(self, owner: Owner, pool: str, member: str) -> SeatAssignment:
        """Raises `NotFound`."""
        ...


class ContractRepository(Protocol):
    """Contracts, their append-only event chains, personal data kept apart from what is
    hashed (so it can be erased), and drawn signatures. There is no way to update or
    delete an event."""

    def add(self, contract: Contract) -> Contract:
        """Store a new contract at revision 1."""
        ...

    def get(self, contract_id: str) -> Contract:
        """Raises `ContractNotFound` (also for another tenant's contract)."""
        ...

    def update(self, contract: Contract) -> Contract:
        """Raises `StaleWrite` unless ``contract.revision`` is the stored revision."""
        ...

    def for_owner(self, owner: Owner) -> Sequence[Contract]:
        """Oldest first."""
        ...

    def page_for_owner(
        self, owner: Owner, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Contract]:
        """Up to ``limit`` of the owner's contracts after (created_at, id) ``after``
        (``None``: from the first), oldest first."""
        ...

    def locate(self, token_hash: str) -> tuple[str | None, str, str] | None:
        """(tenant, contract id, signer id) of a live signing token — the one lookup that
        crosses tenants, because the public signing page knows only the token."""
        ...

    def append_event(self, event: ContractEvent) -> None:
        """Append; refuses an event that is not the next in its chain."""
        ...

    def events(self, contract_id: str) -> Sequence[ContractEvent]:
        """The chain, in order."""
        ...

    def last_event(self, contract_id: str) -> ContractEvent | None:
        """The chain's newest event (what the next one links to), without reading the
        rest of the chain; ``None`` before the first."""
        ...

    def put_personal_data(self, data: PersonalData) -> None:
        """Store clear personal data under its commitment, apart from hashed records."""
        ...

    def personal_data(self, commitments: Iterable[str]) -> Mapping[str, PersonalData]:
        """The stored personal data for each of ``commitments`` that is still known."""
        ...

    def erase_personal_data(self, commitments: Iterable[str]) -> None:
        """Forget the clear values and salts; the commitments stay."""
        ...

    def put_attachment(self, contract_id: str, digest: str, content_type: str, data: bytes) -> None:
        """Store a drawn signature image, addressed by its digest."""
        ...

    def attachment(self, contract_id: str, digest: str) -> tuple[str, bytes]:
        """(content type, bytes); raises `NotFound`."""
        ...

    def expired(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        """Open contracts whose signing window ended by ``now``."""
        ...

    def awaiting(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        """Contracts sent and not signed by everyone, whose signing window is still open
        at ``now``, nearest deadline first (then by id)."""
        ...

    def due(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        """Contracts awaiting signature at ``now`` (as `awaiting`) whose next due instant
        is ``now`` or earlier, earliest first (then by id): what the sweep has to look at.
        Every ``add`` or ``update`` leaves a contract out for signature due at once (at
        its ``created_at``) and any other contract never due; `schedule` moves it on.
        Read by an index on the tenant and the due instant, so the cost follows the
        contracts due, not the contracts stored."""
        ...

    def schedule(self, contract_id: str, revision: int, at: datetime | None) -> bool:
        """Make the contract due next at ``at`` (``None``: not due until written again),
        without a new revision, only if it is still at ``revision`` (a write since the
        sweep read it leaves it due at once); ``False`` when it is not."""
        ...


class PaymentProvider(Protocol):
    """The seam to a payment provider (Stripe, Paddle...). The library ships none: the
    host writes one against its provider's API (see docs/payment-providers.md) and feeds
    the provider's webhooks to ``ents.billing.apply_provider_event``."""

    def start_checkout(
        self, owner: Owner, plan: Plan, *, seats: int | None, reference: str
    ) -> Checkout:
        """Open a checkout for ``plan``; ``reference`` is unique per call (use it as the
        provider's idempotency key)."""
        ...

    def change_plan(
        self, external_id: str, plan: Plan, *, seats: int | None, idempotency_key: str
    ) -> ProviderSubscription:
        """Move an existing provider subscription to another plan. A call repeated with
        the same ``idempotency_key`` (a retry) must not act twice."""
        ...

    def cancel(
        self, external_id: str, *, at_period_end: bool, idempotency_key: str
    ) -> ProviderSubscription:
        """Cancel now or at the period's end; idempotent by ``idempotency_key``."""
        ...

    def fetch(self, external_id: str) -> ProviderSubscription | None:
        """The provider's current state, ``None`` if it has no such subscription."""
        ...


@runtime_checkable
class InvoiceDelivery(Protocol):
    """What a payment provider implements, besides `PaymentProvider`, to collect the
    invoices the library finalizes: each finalized invoice is recorded in the outbox in
    the finalizing transaction and handed to ``send_invoice`` after commit (again by the
    sweep while the provider is unreachable), always under the same idempotency key. The
    provider's payment events then say what is paid (``ents.billing.apply_provider_event``).
    A provider without it is not sent invoices."""

    def send_invoice(self, invoice: Invoice, *, idempotency_key: str) -> Mapping[str, Any]:
        """Create (or find, by ``idempotency_key``) the provider's invoice; the answer is
        kept on the command (the provider's invoice id, a hosted URL)."""
        ...


class ProviderRepository(Protocol):
    """Which provider events were applied, and what each provider subscription is."""

    def seen(self, event_id: str) -> bool:
        """Whether the provider event ``event_id`` was applied already (webhooks are
        delivered more than once)."""
        ...

    def mark_seen(self, event_id: str, at: datetime) -> None:
        """Record that ``event_id`` was applied."""
        ...

    def link(self, external_id: str) -> ProviderLink | None:
        """What we know of the provider subscription ``external_id``."""
        ...

    def link_for_checkout(self, checkout_id: str) -> ProviderLink | None:
        """The link made when the checkout ``checkout_id`` started."""
        ...

    def put_link(self, link: ProviderLink) -> None:
        """Store or replace a link."""
        ...

    def add_command(self, command: ProviderCommand) -> None:
        """Record a command to the provider (the outbox); same unit of work as the
        decision that needs it."""
        ...

    def command(self, command_id: str) -> ProviderCommand:
        """Raises `NotFound` if there is none."""
        ...

    def update_command(
        self, command: ProviderCommand, *, expected: ProviderCommand | None = None
    ) -> bool:
        """Store ``command``; with ``expected``, only if the stored one still has its
        status and attempts (two senders racing: one wins). Returns whether it did."""
        ...

    def due_commands(self, now: datetime, limit: int = 500) -> Sequence[ProviderCommand]:
        """Pending commands whose next attempt is due, oldest first."""
        ...

    def open_commands(self, owner: Owner) -> Sequence[ProviderCommand]:
        """The owner's commands not yet done at the provider (pending or failed), oldest
        first."""
        ...

    def owners_with_open_commands(self, owners: Sequence[Owner]) -> set[Owner]:
        """Which of ``owners`` have a command not yet done at the provider (one read)."""
        ...


class MigrationRepository(Protocol):
    """Plan-version migrations of the unit of work's tenant and their items."""

    def add(self, migration: Migration, items: Sequence[MigrationItem]) -> None:
        """Store a new migration with its items (all pending)."""
        ...

    def get(self, migration_id: str) -> Migration:
        """Raises `MigrationNotFound` (also for another tenant's migration)."""
        ...

    def list(self, limit: int = 100) -> Sequence[Migration]:
        """The tenant's migrations, newest first."""
        ...

    def set_status(
        self,
        migration_id: str,
        expected: Iterable[MigrationStatus],
        status: MigrationStatus,
        at: datetime,
    ) -> bool:
        """Move the migration to ``status`` if it is in one of ``expected`` (workers
        racing: one wins, the others find it done); returns whether it did."""
        ...

    def subscribers(self, plan_key: str, versions: Iterable[int]) -> Sequence[Subscription]:
        """Live subscriptions on ``plan_key`` at one of ``versions``, oldest first."""
        ...

    def items(
        self,
        migration_id: str,
        *,
        after: int = 0,
        limit: int = 1000,
        status: str | None = None,
    ) -> Sequence[MigrationItem]:
        """The items after position ``after``, in order (with ``status``, only those)."""
        ...

    def claim(self, migration_id: str, limit: int) -> Sequence[MigrationItem]:
        """Up to ``limit`` pending items, first in order, locked until the unit of work
        ends; items another unit of work holds are skipped, never waited for (two workers
        never get one item)."""
        ...

    def settle(self, item: MigrationItem) -> None:
        """Store the item's final state."""
        ...

    def settle_many(self, items: Sequence[MigrationItem]) -> None:
        """`settle` each of ``items`` (one write for all of them where the store can)."""
        ...

    def counts(self, migration_id: str) -> Mapping[str, int]:
        """How many items are in each status."""
        ...

    def cancel_pending(self, migration_id: str, at: datetime) -> int:
        """Mark every pending item canceled (an item a worker holds is left to it, and
        settled by it); returns how many."""
        ...

    def price_locks(self, subscription_id: str) -> Sequence[PriceLock]:
        """The price locks of migrations that moved this subscription or scheduled its
        move (a scheduled item's lock dates from the move's instant, its ``done_at``)."""
        ...


class InvoiceRepository(Protocol):
    """Finalized invoices and credit notes of the unit of work's tenant, and the gapless
    sequences their numbers come from."""

    def get(self, invoice_id: str) -> Invoice:
        """Raises `NotFound` (also for another tenant's invoice)."""
        ...

    def for_period(self, owner: Owner, period_start: datetime) -> Invoice | None:
        """The owner's invoice for the period starting at ``period_start``, if finalized."""
        ...

    def for_periods(
        self, wanted: Sequence[tuple[Owner, datetime]]
    ) -> Mapping[tuple[Owner, datetime], Invoice]:
        """`for_period` for each ``(owner, period_start)`` of ``wanted``, read together:
        only those finalized are in the answer."""
        ...

    def list(self, owner: Owner) -> Sequence[Invoice]:
        """The owner's invoices and credit notes, oldest first."""
        ...

    def open_due(self, until: datetime, limit: int = 500) -> Sequence[Invoice]:
        """The tenant's open invoices (not credit notes) due by ``until``, earliest due
        first: what the sweep tells owners about ahead of and after their due date."""
        ...

    def next_number(self, prefix: str) -> int:
        """The next number of the tenant's sequence for ``prefix`` (1 first), taken under
        a lock held until the unit of work ends: a concurrent finalizer waits, and a
        rollback gives the number back, so the sequence has no gaps."""
        ...

    def add(self, invoice: Invoice) -> Invoice:
        """Store a finalized invoice with its lines; raises `InvoiceExists` if the owner
        has one for that period already."""
        ...

    def add_many(self, invoices: Sequence[Invoice]) -> Sequence[Invoice]:
        """`add` each of ``invoices`` (one write where the store can); raises
        `InvoiceExists` if an owner has one for that period already, and then none of
        them is stored once the unit of work rolls back."""
        ...

    def set_payment(self, invoice: Invoice) -> Invoice:
        """Store ``invoice``'s payment state (status, paid, void fields); its content is
        never rewritten."""
        ...


class RevisionRepository(Protocol):
    """Each owner's terms revision: the number that moves whenever what the owner is
    entitled to changes. Writes that change terms `bump` it under an exclusive lock
    before they read usage; consumptions carry the revision they resolved at and the
    store refuses them when it moved (see `UsageRepository.add`), so no process enforces
    terms another process has changed."""

    def current(self, owner: Owner) -> int:
        """The revision (0 for an owner whose terms were never written)."""
        ...

    def lock(self, owner: Owner) -> int:
        """The revision, read under a shared lock held until the unit of work ends: terms
        cannot change under the caller."""
        ...

    def lock_rule(self, rule: str) -> None:
        """Hold this tenant's lock for a tenant-wide ``rule`` (``"one-free-plan"``) until
        the unit of work ends: writes that check a rule across owners take it before they
        read what the rule counts, so two of them never both find it satisfied."""
        ...

    def claim(self, owner: Owner) -> bool:
        """Take the owner's exclusive lock unless another unit of work holds it (``False``:
        nothing locked, move on). Workers that share a job (sweeps on every pod) claim an
        owner before acting on it, so each change is applied by one of them, and none
        waits behind another or behind a write in progress."""
        ...

    def claim_many(self, owners: Sequence[Owner]) -> set[Owner]:
        """`claim` for many owners at once (one statement where the store can): the owners
        claimed; the others are held by another unit of work. A job that handles a group
        of owners in one unit of work claims the group with it."""
        ...

    def bump(self, owner: Owner, since: datetime | None = None, *, stamp: bool = True) -> int:
        """Move the revision (once per unit of work: later calls return the same number),
        under an exclusive lock, and stamp the owner's usage counters with it — those of
        periods starting at ``since`` or later and the all-time ones, or all of them when
        ``since`` is ``None``. Repositories that write terms (subscriptions, overrides)
        call it themselves; use cases call it first, before reading what they enforce.

        ``stamp=False`` takes the lock and moves the revision only: a use case that must
        read under the lock to learn ``since`` (the subscription's usage period) reads
        once, then calls `stamp`, before reading any usage."""
        ...

    def stamp(self, owner: Owner, since: datetime | None = None) -> None:
        """Stamp the counters, as `bump` does, with the revision this unit of work moved."""
        ...

    def bump_many(self, owners: Sequence[Owner]) -> Mapping[Owner, int]:
        """`bump` each of ``owners`` with ``stamp=False``, in the order given (callers
        pass a stable order, so two of them never wait on each other in a cycle), in one
        write where the store can; returns each owner's new revision."""
        ...

    def stamp_many(self, since: Mapping[Owner, datetime | None]) -> None:
        """`stamp` each owner's counters (one write where the store can). A store may
        stamp, for every owner, the counters of periods from the earliest ``since`` on:
        counters of periods already over take no more consumption, so stamping them too
        changes nothing."""
        ...


class ChangeFeed(Protocol):
    """The change feed. A unit of work appends one entry per owner whose terms or usage
    it changed (and one per catalog change) in the same transaction, right before it
    commits; followers read what came after the last entry they saw."""

    def note(self, owner: Owner | None, kind: ChangeKind) -> None:
        """Remember that this unit of work changed ``owner`` (``None``: the catalog); the
        entries are written at commit."""
        ...

    def read(self, after: int, missing: Sequence[int] = (), limit: int = 10_000) -> FeedPage:
        """Entries with a ``seq`` above ``after``, plus those among ``missing`` (numbers a
        follower saw skipped: a transaction may commit a lower number after a higher
        one), in ``seq`` order."""
        ...

    def head(self) -> int:
        """The highest ``seq`` written so far (0 for an empty feed)."""
        ...

    def prune(self, before: datetime, limit: int = 10_000) -> int:
        """Delete up to ``limit`` entries older than ``before``, never the newest one (it
        keeps numbers from being handed out again); returns how many."""
        ...


class AuditLog(Protocol):
    """Audit events; append-only."""

    def append(self, event: AuditEvent) -> None:
        """Record an event in the unit of work (it commits with the change it describes)."""
        ...

    def for_owner(self, owner: Owner) -> Sequence[AuditEvent]:
        """Oldest first."""
        ...

    def for_target(self, target: str) -> Sequence[AuditEvent]:
        """Every event about one record, oldest first."""
        ...

    def page_for_owner(
        self, owner: Owner, after: int | None, limit: int, *, newest_first: bool = False
    ) -> Sequence[tuple[int, AuditEvent]]:
        """Up to ``limit`` of the owner's events past position ``after`` (``None``: from
        the first, or the newest), each with its position (a key that only grows)."""
        ...

    def page_for_target(
        self, target: str, after: int | None, limit: int
    ) -> Sequence[tuple[int, AuditEvent]]:
        """Up to ``limit`` events about one record after position ``after``, oldest
        first, each with its position."""
        ...


@runtime_checkable
class RequestRepository(Protocol):
    """Mutations remembered by their idempotency key (`KeyedRequest`), so a repeat after
    a lost acknowledgement is answered rather than applied again."""

    def claim(self, request: KeyedRequest) -> KeyedRequest | None:
        """Store ``request`` if its owner has not used its key yet and return ``None``;
        otherwise store nothing and return the request stored under the key. A claim
        racing another unit of work's for the same key waits for it, so the two never
        both get ``None``."""
        ...

    def settle(self, owner: Owner, key: str, outcome: Mapping[str, Any]) -> None:
        """Record what the claimed request did (the ids a repeat answers from)."""
        ...

    def forget(self, before: datetime, limit: int = 10_000) -> int:
        """Drop requests made before ``before``, at most ``limit``; returns how many."""
        ...


@runtime_checkable
class NotificationRepository(Protocol):
    """The notification outbox of the tenant (`Notification`): rows written in the
    transaction that caused them, claimed by deliverers with a lease, marked delivered or
    backed off, and forgotten after a retention period."""

    def add(self, notification: Notification) -> bool:
        """Store it unless a notification of its owner with the same ``key`` is stored
        (``False``: written before, by this or a concurrent unit of work, which a second
        writer waits for). Leaves the unit of work usable either way."""
        ...

    def append(self, notification: Notification) -> None:
        """`add` when the caller needs no answer: stored once per key all the same, but
        the store may write it later in the unit of work (with others, in one statement),
        never after the commit nor after a read of notifications in it."""
        ...

    def get(self, notification_id: str) -> Notification:
        """The notification; `NotFound` if the tenant has none with that id."""
        ...

    def claim(
        self, worker: str, now: datetime, until: datetime, limit: int = 100
    ) -> Sequence[Notification]:
        """Claim for ``worker`` until ``until`` up to ``limit`` notifications due at ``now``,
        oldest first: never one another deliverer's unexpired claim holds, and never one
        of an owner whose older notification is still pending and not in this claim (so
        each owner's are handed over in order). Concurrent claims skip each other's rows
        rather than wait."""
        ...

    def delivered(self, ids: Sequence[str], worker: str, now: datetime) -> int:
        """Mark delivered those of ``ids`` that ``worker`` still holds; how many."""
        ...

    def release(self, ids: Sequence[str], worker: str) -> None:
        """Let go of ``worker``'s claim on ``ids`` without a delivery attempt."""
        ...

    def update(self, notification: Notification, worker: str | None) -> bool:
        """Write a failed attempt (or a staff retry, ``worker=None``); with a ``worker``,
        only while it holds the claim. ``False``: it did not."""
        ...

    def listed(
        self, owner: Owner | None = None, failed: bool = False, limit: int = 50
    ) -> Sequence[Notification]:
        """The newest first: of ``owner`` (``None``: every owner), parked ones only when
        ``failed``."""
        ...

    def purge(self, before: datetime, limit: int = 10_000) -> int:
        """Forget notifications delivered before ``before``, at most ``limit``; how many."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Leaving the ``with`` block without ``commit()`` rolls back, so a
    use case that raises leaves storage as it was."""

    effective_at: datetime | None
    """The instant this unit of work's writes take effect: the history of subscriptions
    and overrides dates what it appends with it. The library sets it to the call's time
    (its clock's ``now``) when it opens the unit of work; ``None`` (nobody set it) dates
    them with the wall clock."""

    @property
    def tenant(self) -> str | None:
        """The tenant everything in this unit of work is scoped to."""
        ...

    @property
    def plans(self) -> PlanRepository:
        """Plans (global, whatever the tenant)."""
        ...

    @property
    def subscriptions(self) -> SubscriptionRepository:
        """Subscriptions of the tenant."""
        ...

    @property
    def overrides(self) -> OverrideRepository:
        """Overrides of the tenant."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The audit log."""
        ...

    @property
    def usage(self) -> UsageRepository:
        """Usage counters, records and reservations."""
        ...

    @property
    def seats(self) -> SeatRepository:
        """Seat assignments."""
        ...

    @property
    def contracts(self) -> ContractRepository:
        """Contracts, their events and personal data."""
        ...

    @property
    def provider(self) -> ProviderRepository:
        """What was applied from the payment provider."""
        ...

    @property
    def requests(self) -> RequestRepository:
        """Mutations remembered by their idempotency key."""
        ...

    @property
    def notifications(self) -> NotificationRepository:
        """The notification outbox."""
        ...

    @property
    def migrations(self) -> MigrationRepository:
        """Plan-version migrations and their items."""
        ...

    @property
    def invoices(self) -> InvoiceRepository:
        """Finalized invoices and their number sequences."""
        ...

    @property
    def revisions(self) -> RevisionRepository:
        """Per-owner terms revisions that writes enforcing limits check against."""
        ...

    @property
    def feed(self) -> ChangeFeed:
        """The change feed entries this unit of work writes at commit."""
        ...

    @property
    def committed_revision(self) -> int | None:
        """After ``commit()``: the feed position of this unit of work's last entry
        (``None`` if it changed nothing a follower caches)."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: if the block raises, its writes are undone and the
        outer unit of work carries on as before the block."""
        ...

    def commit(self) -> None:
        """Make every write of the unit of work durable at once."""
        ...

    def rollback(self) -> None:
        """Undo every write of the unit of work."""
        ...

    def when_durable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this unit of work's writes are durable: right after
        ``commit()`` when it owns its transaction, at the host's commit when it joined the
        host's (and never if the host rolls back)."""
        ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Store(Protocol):
    """Where everything is stored; `MemoryStore` and `SqlStore` implement it and the store
    contract suite checks a new one."""

    def unit_of_work(
        self, tenant: str | None, join: object | None = None, *, read_only: bool = False
    ) -> UnitOfWork:
        """A unit of work for ``tenant``. ``join`` is the host's own transaction handle
        (for the SQL store: a SQLAlchemy ``Connection`` or ``Session``) to run inside, as a
        savepoint, so that the host's writes and ours commit together; a store that cannot
        join it raises `InvalidInput`. ``read_only`` promises no writes (a store may then
        take lighter locks)."""
        ...

    def tenants(self) -> Sequence[str | None]:
        """Every tenant that has stored anything (the sweep visits each)."""
        ...

    def read_changes(self, after: int, missing: tuple[int, ...] = ()) -> FeedPage:
        """`ChangeFeed.read` outside any unit of work of the caller's (the follower runs
        in a thread of its own)."""
        ...

    def feed_head(self) -> int:
        """The last change-feed position handed out, where a new follower starts."""
        ...

    def change_hints(self) -> list[ChangeHint]:
        """Pushes that wake the follower early (`ChangeHint`); an empty list when the
        store has none and the follower only polls."""
        ...

    @property
    def shared(self) -> bool:
        """Whether processes other than this one may write to the store."""
        ...


@runtime_checkable
class InlineConsumption(Protocol):
    """A fast path a store may offer (`MemoryStore` does): one consumption that needs
    nothing else — record, count, commit its change-feed entry — as a whole unit of
    work, without the unit-of-work machinery. Same rules and results as
    ``unit_of_work(...).usage.consume`` followed by a commit."""

    def consume_inline(
        self, consumption: Consumption, wall: datetime | None = None
    ) -> tuple[Counter | None, UsageRecord | None, int | None]:
        """The counter after the consumption and the committed feed position; or the
        earlier record of the same key; or ``(None, None, None)`` when the fast path
        cannot decide (stale terms, a held reservation...) and the caller takes the
        unit-of-work path. ``wall`` is the wall clock's time when the caller has just
        read it: the feed entry is dated by it (``None``: the store reads the clock)."""
        ...


class BadTokenLimit(Protocol):
    """What the signing pages ask of a bad-token limit."""

    def fail(self, client: str) -> bool:
        """Count a link from ``client`` that opened nothing; ``True`` when the client is
        past the limit (this link gets the "try again later" page)."""
        ...

    def retry_after(self) -> int:
        """Seconds to tell a client past the limit to wait."""
        ...
