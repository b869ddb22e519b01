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
from typing import Protocol, runtime_checkable

from entitlements.domain.audit import AuditEvent
from entitlements.domain.billing import Checkout, ProviderLink, ProviderSubscription
from entitlements.domain.contracts.contract import Contract, PersonalData
from entitlements.domain.contracts.events import ContractEvent
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Plan
from entitlements.domain.subscription import Subscription
from entitlements.domain.usage import Counter, Reservation, SeatAssignment, UsageRecord

__all__ = [
    "AuditLog",
    "Clock",
    "ContractRepository",
    "EventListener",
    "OverrideRepository",
    "PaymentProvider",
    "PlanRepository",
    "ProviderRepository",
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
    (a conditional update on SQL)."""

    def counter(self, owner: Owner, metric: str, period_start: datetime) -> Counter:
        """The counter, zero if nothing was ever recorded."""
        ...

    def counters(self, owner: Owner, metric: str) -> Sequence[Counter]:
        """Every period's counter of a metric, oldest first (usage history)."""
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
    ) -> Counter | None:
        """Add to ``used`` and ``reserved`` (either may be negative) and return the new
        counter; return ``None`` and change nothing if ``used + reserved`` would pass
        ``ceiling`` (checked only when the total grows) or a part would go below zero."""
        ...

    def set_used(self, owner: Owner, metric: str, period_start: datetime, used: int) -> Counter: ...

    def add_record(self, record: UsageRecord) -> UsageRecord | None:
        """Store the record, or return the already stored one with the same idempotency
        key for this owner (and store nothing)."""
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

    def update_reservation(self, reservation: Reservation) -> None: ...

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
