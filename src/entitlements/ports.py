"""The ports: what the application needs from storage, time and the outside world.

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

from entitlements.domain.audit import AuditEvent
from entitlements.domain.billing import Checkout, ProviderLink, ProviderSubscription
from entitlements.domain.change import ChangeKind, FeedPage
from entitlements.domain.contracts.contract import Contract, PersonalData
from entitlements.domain.contracts.events import ContractEvent
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.domain.subscription import Subscription
from entitlements.domain.usage import Counter, Reservation, SeatAssignment, UsageRecord

__all__ = [
    "AuditLog",
    "ChangeFeed",
    "Clock",
    "ContractRepository",
    "EventListener",
    "OverrideRepository",
    "PaymentProvider",
    "PlanRepository",
    "ProviderRepository",
    "RevisionRepository",
    "SeatRepository",
    "Store",
    "SubscriptionRepository",
    "UnitOfWork",
    "UsageRepository",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class EventListener(Protocol):
    """Called after a unit of work commits, once per audit event it recorded; the host
    forwards them (webhooks, metrics, logs). A listener's failure never undoes the
    committed change."""

    def __call__(self, event: AuditEvent, /) -> None: ...


class PlanRepository(Protocol):
    def get(self, key: str, version: int | None = None) -> Plan:
        """The plan at ``version`` (default: latest), with its current name and status;
        raises `UnknownPlan`."""
        ...

    def find(self, key: str) -> Plan | None: ...

    def list(self) -> Sequence[Plan]:
        """Latest version of every plan, ordered by key."""
        ...

    def versions(self, key: str) -> Sequence[Plan]: ...

    def add(self, plan: Plan) -> Plan:
        """Store a new plan at version 1; raises `PlanExists`."""
        ...

    def update(self, plan: Plan) -> Plan:
        """Store plan-level fields (name, status, owner kinds) and, when ``plan.version``
        is one more than the latest, its terms as a new version. Raises `StaleWrite` unless
        ``plan.revision`` is the stored revision; returns the plan with the new revision."""
        ...


class SubscriptionRepository(Protocol):
    def current(self, owner: Owner) -> Subscription | None:
        """The owner's most recent subscription (live or ended), if any."""
        ...

    def get(self, subscription_id: str) -> Subscription:
        """Raises `NotFound` (also for another tenant's subscription)."""
        ...

    def history(self, owner: Owner) -> Sequence[Subscription]: ...

    def add(self, subscription: Subscription) -> Subscription:
        """Store a new subscription; raises `SubscriptionExists` if the owner has a live one."""
        ...

    def update(self, subscription: Subscription) -> Subscription:
        """Raises `StaleWrite` unless ``subscription.revision`` is the stored revision;
        returns it with the new revision."""
        ...

    def due(self, now: datetime, limit: int = 500) -> Sequence[Subscription]:
        """Live subscriptions that time may have changed by ``now``, earliest change
        first (ties in the order they were created)."""
        ...

    def count_on_plans(self, plan_keys: Iterable[str], exclude_owner: Owner | None = None) -> int:
        """How many owners of this tenant hold a live subscription on one of these plans."""
        ...

    def search(
        self, text: str | None, statuses: frozenset[str] | None, limit: int = 100
    ) -> Sequence[Subscription]:
        """Each owner's most recent subscription, newest first: only those whose status is
        in ``statuses`` (when given) and whose owner id, external id or plan key contains
        ``text`` (case-insensitive, when given). Staff consoles list owners with it."""
        ...


class OverrideRepository(Protocol):
    def for_owner(self, owner: Owner) -> Sequence[Override]: ...

    def put(self, override: Override) -> Override | None:
        """Set the owner's override for (kind, key); returns the one it replaced."""
        ...

    def remove(self, owner: Owner, kind: OverrideKind, key: str) -> Override:
        """Raises `OverrideNotFound`."""
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

    def ensure(self, owner: Owner, metric: str, period_start: datetime, revision: int) -> None:
        """Create the counter if missing, and stamp it with terms ``revision`` (the caller
        holds the owner's revision lock, so that revision is the one in force)."""
        ...

    def add(
        self,
        owner: Owner,
        metric: str,
        period_start: datetime,
        *,
        used: int = 0,
        reserved: int = 0,
        ceiling: int | None = None,
        revision: int | None = None,
        now: datetime | None = None,
        fallback: tuple[str, int] | None = None,
        hold_until: datetime | None = None,
    ) -> Counter | None:
        """Add to ``used`` and ``reserved`` (either may be negative) and return the new
        counter. Return ``None`` and change nothing if a part would go below zero, or —
        when the total grows — it would pass ``ceiling``; if ``revision`` is given and the
        counter does not exist or carries another terms revision; if ``now`` is given and
        a held reservation counted in it expired by then (settle those first); if
        ``fallback`` (plan key, version) is given and that is no longer the plan's latest
        version. Without ``revision``, a missing counter is created first.
        ``hold_until`` is the expiry of units being reserved (kept as ``held_until``)."""
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

    def remove_record(self, owner: Owner, record_id: str) -> None:
        """Take back a record this unit of work just stored (its consumption was refused)."""
        ...

    def records(self, owner: Owner, metric: str, period_start: datetime) -> Sequence[UsageRecord]:
        """Oldest first."""
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

    def put_personal_data(self, data: PersonalData) -> None: ...

    def personal_data(self, commitments: Iterable[str]) -> Mapping[str, PersonalData]: ...

    def erase_personal_data(self, commitments: Iterable[str]) -> None:
        """Forget the clear values and salts; the commitments stay."""
        ...

    def put_attachment(
        self, contract_id: str, digest: str, content_type: str, data: bytes
    ) -> None: ...

    def attachment(self, contract_id: str, digest: str) -> tuple[str, bytes]:
        """(content type, bytes); raises `NotFound`."""
        ...

    def expired(self, now: datetime, limit: int = 500) -> Sequence[Contract]:
        """Open contracts whose signing window ended by ``now``."""
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
        self, external_id: str, plan: Plan, *, seats: int | None
    ) -> ProviderSubscription:
        """Move an existing provider subscription to another plan."""
        ...

    def cancel(self, external_id: str, *, at_period_end: bool) -> ProviderSubscription: ...

    def fetch(self, external_id: str) -> ProviderSubscription | None:
        """The provider's current state, ``None`` if it has no such subscription."""
        ...


class ProviderRepository(Protocol):
    """Which provider events were applied, and what each provider subscription is."""

    def seen(self, event_id: str) -> bool: ...

    def mark_seen(self, event_id: str, at: datetime) -> None: ...

    def link(self, external_id: str) -> ProviderLink | None: ...

    def link_for_checkout(self, checkout_id: str) -> ProviderLink | None: ...

    def put_link(self, link: ProviderLink) -> None: ...


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

    def bump(self, owner: Owner, since: datetime | None = None) -> int:
        """Move the revision (once per unit of work: later calls return the same number),
        under an exclusive lock, and stamp the owner's usage counters with it — those of
        periods starting at ``since`` or later and the all-time ones, or all of them when
        ``since`` is ``None``. Repositories that write terms (subscriptions, overrides)
        call it themselves; use cases call it first, before reading what they enforce."""
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
        """Delete up to ``limit`` entries older than ``before``; returns how many."""
        ...


class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> None: ...

    def for_owner(self, owner: Owner) -> Sequence[AuditEvent]:
        """Oldest first."""
        ...

    def for_target(self, target: str) -> Sequence[AuditEvent]: ...


@runtime_checkable
class UnitOfWork(Protocol):
    """One transaction. Leaving the ``with`` block without ``commit()`` rolls back, so a
    use case that raises leaves storage as it was."""

    @property
    def tenant(self) -> str | None: ...

    @property
    def plans(self) -> PlanRepository: ...

    @property
    def subscriptions(self) -> SubscriptionRepository: ...

    @property
    def overrides(self) -> OverrideRepository: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def usage(self) -> UsageRepository: ...

    @property
    def seats(self) -> SeatRepository: ...

    @property
    def contracts(self) -> ContractRepository: ...

    @property
    def provider(self) -> ProviderRepository: ...

    @property
    def revisions(self) -> RevisionRepository: ...

    @property
    def feed(self) -> ChangeFeed: ...

    @property
    def committed_revision(self) -> int | None:
        """After ``commit()``: the feed position of this unit of work's last entry
        (``None`` if it changed nothing a follower caches)."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: if the block raises, its writes are undone and the
        outer unit of work carries on as before the block."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

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

    def feed_head(self) -> int: ...

    def change_hints(self) -> list[Any]:
        """Pushes that wake the follower early (`entitlements.service.coherence.ChangeHint`);
        an empty list when the store has none and the follower only polls."""
        ...

    @property
    def shared(self) -> bool:
        """Whether processes other than this one may write to the store."""
        ...
