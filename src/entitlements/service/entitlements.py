"""`Entitlements`: the one object a host keeps, and the request-path checks.

Use cases are grouped by what they act on (``plans``, ``subscriptions``, ``overrides``,
``audit``); the checks live here because they are what the request path calls: a warm
``allows``/``limit`` is a dict lookup for the owner's snapshot (keyed by the owner's key
string, whose hash Python keeps), one clock reading compared with the cache's window
(every warm snapshot is still valid then and, with the system clock, the cache was
confirmed against the change feed within ``max_staleness``; see
`entitlements.service.cache`) and a set membership — no I/O, no resolution.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from entitlements.clock import SystemClock
from entitlements.domain.access import AccessPolicy
from entitlements.domain.instant import given_utc
from entitlements.domain.notification import NotificationSettings
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.plan import Action
from entitlements.domain.resolution import _MISSING, Decision, Snapshot, _Missing
from entitlements.errors import InvalidInput
from entitlements.ports import (
    ChangeChannel,
    ChangeHint,
    Clock,
    EventListener,
    InvoiceDelivery,
    PaymentProvider,
    Store,
    UnitOfWork,
)
from entitlements.service.audit_trail import AuditTrail
from entitlements.service.authorization import AllowAll, Authorizer
from entitlements.service.cache import SnapshotCache
from entitlements.service.coherence import Coherence, WhenUnreachable
from entitlements.service.construction import check_construction
from entitlements.service.free_plan import OneFreePlan
from entitlements.service.invoices import Invoices, InvoiceSettings, invoice_ended_periods
from entitlements.service.notifications import Notifications
from entitlements.service.overrides import Overrides
from entitlements.service.plans import Plans
from entitlements.service.runtime import Runtime, Transaction
from entitlements.service.seats import Seats
from entitlements.service.snapshots import load_past_snapshot, load_snapshot
from entitlements.service.subscriptions import Subscriptions
from entitlements.service.sweep import Sweep
from entitlements.service.usage import Usage
from entitlements.telemetry import Telemetry

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from entitlements.domain.due import DueChange
    from entitlements.service.billing import Billing
    from entitlements.service.claims import Claims, ClaimsIssuer
    from entitlements.service.contracts import Contracts
    from entitlements.service.migrations import Migrations
    from entitlements.service.provider_outbox import ProviderOutbox

__all__ = ["Entitlements"]

_T = TypeVar("_T")
_S = TypeVar("_S")
_P = ParamSpec("_P")
_R = TypeVar("_R")


class _PartMethod(Generic[_S, _P, _R]):
    """A facade method that is one of its parts' own methods, bound to the part: the
    signature, its defaults and its checks have one home, the part."""

    __slots__ = ("_name", "_part")

    def __init__(
        self,
        method: Callable[Concatenate[_S, _P], _R],
        part: Callable[[Entitlements], _S],
    ) -> None:
        self._name = method.__name__
        self._part = part

    @overload
    def __get__(self, ents: None, owner: type[Entitlements]) -> Self: ...

    @overload
    def __get__(self, ents: Entitlements, owner: type[Entitlements]) -> Callable[_P, _R]: ...

    def __get__(
        self, ents: Entitlements | None, owner: type[Entitlements]
    ) -> Self | Callable[_P, _R]:
        if ents is None:
            return self
        return getattr(self._part(ents), self._name)  # type: ignore[no-any-return]


def _channel(redis: ChangeChannel | str | None) -> ChangeChannel | None:
    """The ``redis=`` argument as a channel port: a URL is the one place the facade
    reaches for an adapter, and only when given one (the extra may not be installed)."""
    if redis is None or isinstance(redis, ChangeChannel):
        return redis
    if isinstance(redis, str):
        from entitlements.adapters.redis_hints import RedisChannel

        return RedisChannel(redis)
    raise InvalidInput(
        "redis", "must be a redis:// URL or a ChangeChannel (such as a RedisChannel)", redis
    )


def _seconds(value: timedelta | float, field: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise InvalidInput(field, "must be a duration of zero or more seconds", value)
    return float(seconds)


class Entitlements:
    """Everything the library does for one host, over one store.

    ``policy`` decides what each subscription status grants (and the fallback plan);
    ``authorizer`` decides who may change what; ``listeners`` hear every audit event
    after its transaction commits; ``telemetry`` (`entitlements.telemetry.OpenTelemetry`)
    traces and counts units of work. ``payment_provider`` is the host's provider (none:
    paid plans are staff-managed, seed 000); ``one_free_plan_per_tenant`` turns on seed
    004's rule. ``ids`` makes record ids (random hex by default);
    tests pass a counter to compare two stores call for call.

    ``max_staleness`` bounds how old a cached answer may be relative to writes made by
    other processes: the cache is confirmed against the store's change feed at least that
    often (0: before every answer). ``when_unreachable`` says what answers do when the feed
    cannot be read for longer than that: serve what is cached (the default; logged and
    counted in ``coherence.stale_answers``) or raise `FeedUnavailable`. ``redis`` (a
    ``redis://`` URL, a `RedisChannel` (extra ``redis``), or any `ChangeChannel`)
    announces this process's commits on a channel and wakes its follower on the others'
    — a hint only, the change feed stays the truth; worth it on MariaDB/MySQL, which have
    no push.

    ``notification_settings`` says how far ahead the host hears of trials ending, of
    contracts left unsigned and signing links expiring, and how long delivered
    notifications are kept (`NotificationSettings`).

    Everything passed in is a port (`entitlements.ports`): the facade imports no
    adapter.
    """

    # slots, not an instance dict: attribute reads on the request path stay the fast kind
    __slots__ = (
        "__weakref__",
        "_building",
        "_cache",
        "_clock",
        "_invoicing",
        "_parts",
        "_payment_provider",
        "_snapshots",
        "_warm",
        "audit",
        "coherence",
        "notifications",
        "overrides",
        "plans",
        "runtime",
        "seats",
        "store",
        "subscriptions",
        "usage",
    )

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        policy: AccessPolicy | None = None,
        authorizer: Authorizer | None = None,
        listeners: Sequence[EventListener] = (),
        cache_size: int = 100_000,
        telemetry: Telemetry | None = None,
        ids: Callable[[], str] | None = None,
        payment_provider: PaymentProvider | None = None,
        one_free_plan_per_tenant: bool = False,
        max_staleness: timedelta | float = 1.0,
        when_unreachable: WhenUnreachable | str = WhenUnreachable.SERVE_STALE,
        redis: ChangeChannel | str | None = None,
        notification_settings: NotificationSettings | None = None,
        invoicing: InvoiceSettings | None = None,
    ) -> None:
        given = (store, clock, policy, authorizer, listeners, cache_size, telemetry, ids)
        self._parts: dict[Callable[[Entitlements], Any], Any] = {}
        self._building = threading.RLock()
        check_construction(*given, payment_provider, one_free_plan_per_tenant, when_unreachable)
        cache = SnapshotCache(cache_size)
        channel = _channel(redis)

        def hints() -> list[ChangeHint]:
            found = store.change_hints()
            return found if channel is None else [*found, channel.subscribe()]

        self.coherence = Coherence(
            store,
            cache,
            max_staleness=_seconds(max_staleness, "max_staleness"),
            when_unreachable=WhenUnreachable(when_unreachable),
            hints=hints,
            background=store.shared,
        )
        """The follower of the change feed; its ``stale_answers`` and ``resyncs`` are worth
        a metric."""
        self.runtime = Runtime(
            store=store,
            clock=clock or SystemClock(),
            policy=policy or AccessPolicy(),
            authorizer=authorizer or AllowAll(),
            listeners=list(listeners),
            cache=cache,
            telemetry=telemetry,
            coherence=self.coherence,
            announce=None if channel is None else channel.announce,
        )
        """The wiring the groups share (clock, store, cache, policy); not for hosts."""
        if ids is not None:
            self.runtime.new_id = ids
        self.store = store
        """The store given."""
        if invoicing is not None and not isinstance(invoicing, InvoiceSettings):
            raise InvalidInput("invoicing", "must be InvoiceSettings or None", invoicing)
        self._invoicing = invoicing or InvoiceSettings()
        self.runtime.periods_ended = self._invoice_ended_periods
        self.plans = Plans(self.runtime)
        """The plan catalog: define, revise, activate, archive, retire, sync from a file."""
        self.subscriptions = Subscriptions(
            self.runtime,
            free_plan=OneFreePlan(one_free_plan_per_tenant),
            invoicing=self._invoicing,
        )
        """The subscription lifecycle: trials, conversion, plan and seat changes,
        suspension, cancellation."""
        self.overrides = Overrides(self.runtime)
        """Per-owner exceptions to the plan."""
        self.audit = AuditTrail(self.runtime)
        """Who changed what, read back."""
        self.usage = Usage(self.runtime)
        """Metered usage, gauges and reservations."""
        self.seats = Seats(self.runtime)
        """Named seat assignments."""
        if notification_settings is None:
            notification_settings = NotificationSettings()
        elif not isinstance(notification_settings, NotificationSettings):
            raise InvalidInput(
                "notification_settings", "must be a NotificationSettings", notification_settings
            )
        self.notifications = Notifications(self.runtime, notification_settings)
        """What the host should hear about (thresholds crossed, trials ending...), and
        its delivery to the host's handler."""
        self._payment_provider = payment_provider
        self._cache = self.runtime.cache
        self._snapshots = self._cache.snapshots
        self._warm = self._cache.warm
        self._clock = self.runtime.warm_clock

    # Contracts, billing, claims and the sweep are built on first use: a host that never
    # touches them never loads their modules (nor cryptography).

    def _part(self, build: Callable[[Entitlements], _T]) -> _T:
        """The part ``build`` makes, made once (under a lock: two threads asking first
        get the same part). Kept in a dict of its own, never in an instance dict: on
        CPython 3.11 an instance whose ``__dict__`` has been built reads every attribute
        slower, the request path's included (``functools.cached_property`` builds it)."""
        try:
            return self._parts[build]  # type: ignore[no-any-return]
        except KeyError:
            with self._building:
                if build not in self._parts:
                    self._parts[build] = build(self)
                return self._parts[build]  # type: ignore[no-any-return]

    @property
    def contracts(self) -> Contracts:
        """Contracts, signatures and conversion from a signed contract."""
        return self._part(_contracts)

    @property
    def migrations(self) -> Migrations:
        """Plan-version migrations: move many subscribers to a version as a previewed,
        resumable, audited job."""
        return self._part(_migrations)

    @property
    def billing(self) -> Billing:
        """Plans bought through the payment provider, and its events."""
        return self._part(_billing)

    @property
    def _invoice_outbox(self) -> ProviderOutbox | None:
        """The outbox finalized invoices go to the provider through, when the host's
        provider takes invoices (`entitlements.ports.InvoiceDelivery`)."""
        provider = self._payment_provider  # a protocol check costs: none for no provider
        if provider is None or not isinstance(provider, InvoiceDelivery):
            return None
        return self.billing.outbox

    def _invoice_ended_periods(self, tx: Transaction, changes: Sequence[DueChange]) -> None:
        invoice_ended_periods(tx, changes, self._invoicing, self._invoice_outbox)

    @property
    def invoices(self) -> Invoices:
        """What each owner owes: drafts, finalized invoices, payments, credit notes."""
        return self._part(_invoices)

    @property
    def _claims(self) -> ClaimsIssuer:
        return self._part(_claims_issuer)

    @property
    def _sweep(self) -> Sweep:
        return self._part(_sweep)

    # -- the request path ------------------------------------------------------------

    def allows(self, owner: Owner, feature: str, action: Action | str | None = None) -> bool:
        """May ``owner`` use ``feature`` (for ``action``, or for every action) now?"""
        try:
            snapshot = self._warm[owner._key]
        except (KeyError, AttributeError, TypeError):  # not cached, or not an Owner
            return self._current(owner).allows(feature, action)
        cache, clock = self._cache, self._clock  # a local: calling an attribute is slower
        if cache.lo <= clock() < cache.hi:
            if action is None:  # the common question, answered without another call
                try:
                    if feature in snapshot._full:
                        return True
                except TypeError:  # unhashable: Snapshot.allows says what is wrong
                    pass
            return snapshot.allows(feature, action)
        return self._current(owner).allows(feature, action)

    def limit(
        self, owner: Owner, name: str, default: int | _Missing | None = _MISSING
    ) -> int | None:
        """``owner``'s limit ``name`` now: a number, or ``None`` when unlimited. A limit
        the owner's terms do not define raises `UnknownLimit`, unless ``default`` gives
        the answer for that case (``default=0``: a missing limit allows nothing)."""
        return self.snapshot(owner).limit(name, default)

    def snapshot(self, owner: Owner) -> Snapshot:
        """The owner's resolved entitlements now (cached while time and writes leave them
        as they are)."""
        cache, clock = self._cache, self._clock
        try:
            if cache.lo <= clock() < cache.hi:
                return self._warm[owner._key]
        except (KeyError, AttributeError, TypeError):  # not cached, or not an Owner
            pass
        return self._current(owner)

    def claims(self, owner: Owner, now: datetime | None = None) -> Claims:
        """The limits/features claim for the owner's access tokens (seed 004); refuses an
        owner on a retired plan (`PlanRetired`)."""
        return self._claims.claims(owner, now)

    def claims_token(
        self,
        owner: Owner,
        key: Ed25519PrivateKey,
        *,
        ttl: timedelta = timedelta(minutes=15),
        issuer: str = "entitlements",
        audience: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """The claims as a compact JWT signed with EdDSA, verifiable offline with the
        public key (`entitlements.service.claims.verify_claims_token`)."""
        return self._claims.token(owner, key, ttl, issuer, audience, now)

    def explain(self, owner: Owner, feature: str, action: Action | str | None = None) -> Decision:
        """Why ``allows(owner, feature, action)`` answers as it does: the value, the reason,
        and which layer decided."""
        return self.snapshot(owner).explain(feature, action)

    def explain_limit(self, owner: Owner, name: str) -> Decision:
        """Why ``limit(owner, name)`` answers as it does."""
        return self.snapshot(owner).explain_limit(name)

    def resolve(self, owner: Owner, at: datetime | None = None) -> Snapshot:
        """Resolve from storage, without touching the cache, at ``at`` (default: now).

        A past ``at`` answers from what was in force then — the subscription as it stood
        (with time applied as of ``at``), the plan version it held, the overrides set at
        that instant, also those removed or expired since — so disputes, audits and
        invoices get the answer the owner got then, with the same explanations. A future
        ``at`` reads what is stored now and lets time run to ``at`` (what-if queries).
        Past answers are never cached: the request path keeps only current ones."""
        owner = as_owner(owner)
        rt = self.runtime
        now = rt.now()
        when = now if at is None else given_utc(at, "at")
        with rt.read(owner.tenant) as uow:
            if when < now:
                return load_past_snapshot(uow, owner, when, rt.policy)
            return load_snapshot(uow, owner, when, rt.policy)

    def _current(self, owner: Owner) -> Snapshot:
        """The slow path: confirm the cache against the feed, then use the cached
        snapshot if it is still valid now, else resolve and keep the result."""
        owner = as_owner(owner)
        rt = self.runtime
        self.coherence.ensure_fresh()
        at = rt.now()
        rt.cache.settle(rt.timestamp())
        cached = self._snapshots.get(owner)
        if cached is not None and cached.valid_at(at):
            return cached
        generation = rt.cache.generation
        with rt.read(owner.tenant) as uow:
            snapshot = load_snapshot(uow, owner, at, rt.policy)
        if not rt.in_atomic_block:
            rt.cache.put(snapshot, generation)
        return snapshot

    @property
    def last_revision(self) -> int | None:
        """The change-feed position of the last write this thread (or task) committed.
        Carry it to the next request — in the session, say — and call `catch_up` there:
        another process then answers with that write applied (read-your-writes)."""
        return self.runtime.last_revision.get()

    def catch_up(self, revision: int | None) -> None:
        """Apply the change feed here up to ``revision`` (from `last_revision`, possibly
        in another process) before answering; ``None`` does nothing."""
        if revision is None:
            return
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise InvalidInput("revision", "must be a revision from ents.last_revision", revision)
        self.coherence.require(revision)

    def close(self) -> None:
        """Stop following the change feed (the background thread ends)."""
        self.coherence.close()

    def invalidate(self, owner: Owner | None = None) -> None:
        """Forget cached snapshots (one owner's, or all). Rarely needed: writes in other
        processes reach this one through the change feed by themselves."""
        if owner is None:
            self.runtime.cache.clear()
        else:
            self.runtime.cache.invalidate([as_owner(owner)])

    # -- transactions and time -------------------------------------------------------

    @contextmanager
    def atomic(
        self, tenant: str | None = None, now: datetime | None = None, *, join: object | None = None
    ) -> Iterator[UnitOfWork]:
        """Group several calls into one transaction: all of it commits, or none of it.

        ``join`` runs the block inside the host's own transaction (on the SQL store, a
        SQLAlchemy ``Connection`` or ``Session``): the host's rows and ours then commit or
        roll back together (seed 002's atomic creation of an owner and its subscription).
        """
        with self.runtime.transaction(tenant, now, join) as tx:
            yield tx.uow

    process_due = _PartMethod(Sweep.process_due, lambda ents: ents._sweep)
    """The sweep's own ``process_due(now=None, *, batch=500, key_retention=KEY_RETENTION,
    feed_retention=FEED_RETENTION, progress=None)`` (`Sweep.process_due`). Applies trial
    ends, scheduled cancellations, expiries, period roll-overs, override expiries and
    reservation expiries due by ``now``; drops snapshots that time made stale; forgets
    usage idempotency keys older than ``key_retention``; prunes change-feed entries
    committed more than ``feed_retention`` ago by the wall clock (default an hour: a
    process away longer than that drops its cache and resolves afresh). Any number of
    sweeps may run at once (see `entitlements.service.sweep`); each works through
    everything due, ``batch`` items per read; ``progress(handled)`` hears the running
    count after each page (a console showing a long sweep move). Returns a
    `SweepReport`."""


def _contracts(ents: Entitlements) -> Contracts:
    from entitlements.service.contracts import Contracts

    return Contracts(ents.runtime, ents.subscriptions.assignment)


def _migrations(ents: Entitlements) -> Migrations:
    from entitlements.service.migrations import Migrations

    return Migrations(ents.runtime, ents.subscriptions.assignment)


def _billing(ents: Entitlements) -> Billing:
    from entitlements.service.billing import Billing

    return Billing(ents.runtime, ents.subscriptions.assignment, ents._payment_provider)


def _invoices(ents: Entitlements) -> Invoices:
    return Invoices(ents.runtime, ents._invoicing, ents._invoice_outbox)


def _claims_issuer(ents: Entitlements) -> ClaimsIssuer:
    from entitlements.service.claims import ClaimsIssuer

    return ClaimsIssuer(ents.runtime)


def _sweep(ents: Entitlements) -> Sweep:
    return Sweep(ents.runtime, ents.billing.outbox, ents.notifications.settings)
