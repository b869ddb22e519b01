"""The SQL store: SQLAlchemy 2.x Core, explicit row ⇄ domain mapping, one transaction per
unit of work — or a savepoint inside the host's own transaction.

Three ways to bind it:

- ``SqlStore.from_url("sqlite:///entitlements.db")`` — the store owns an engine;
- ``SqlStore(engine)`` — the host's engine; each unit of work is its own transaction;
- ``SqlStore(connection)`` or ``SqlStore(session)`` — the host's connection or ORM
  session: our writes join its transaction inside a SAVEPOINT, so a failed call of ours
  leaves the host's transaction usable, and the commit stays the host's.

Driver errors never leave the adapter: they become `StorageError` (or `Conflict` for
integrity violations), subclasses of `EntitlementsError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import attrs
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.orm import Session

from entitlements.adapters.sql import tables as t
from entitlements.domain.addon import AddOn
from entitlements.domain.audit import AuditEvent
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.instant import Period
from entitlements.domain.override import Override, OverrideKind
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Feature, Limit, Plan, Price
from entitlements.domain.subscription import Subscription
from entitlements.errors import (
    Conflict,
    EntitlementsError,
    InvalidInput,
    NotFound,
    OverrideNotFound,
    PlanExists,
    StaleWrite,
    StorageError,
    SubscriptionExists,
    UnknownPlan,
)

__all__ = ["SqlStore", "SqlUnitOfWork"]

READ_ONLY = "entitlements_read_only"

P = ParamSpec("P")
R = TypeVar("R")


def storage_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate driver errors raised by ``fn`` into the library's own."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except EntitlementsError:
            raise
        except exc.IntegrityError as error:
            raise Conflict(f"the database refused the change: {error.orig}") from error
        except (exc.SQLAlchemyError, exc.DBAPIError) as error:
            raise StorageError(f"storage failed: {type(error).__name__}: {error}") from error

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _tenant(value: str | None) -> str:
    return value or ""


def _owner_of(row: RowMapping) -> Owner:
    return Owner(row["owner_kind"], row["owner_id"], row["tenant"] or None)


def live_owner_key(owner: Owner) -> str:
    return hashlib.sha256(
        f"{_tenant(owner.tenant)}\x1f{owner.kind}\x1f{owner.id}".encode()
    ).hexdigest()


# -- plans ---------------------------------------------------------------------------


def _limits_document(plan: Plan) -> dict[str, Any]:
    return {
        name: {
            "value": limit.value,
            "unit": limit.unit,
            "kind": limit.kind.value,
            "enforcement": limit.enforcement.value,
            "combine": limit.combine.value,
        }
        for name, limit in plan.limits.items()
    }


def _features_document(features: Any) -> dict[str, Any]:
    return {
        key: {"enabled": f.enabled, "actions": None if f.actions is None else sorted(f.actions)}
        for key, f in features.items()
    }


def _features_from(document: Any) -> dict[str, Feature]:
    return {key: Feature(d["enabled"], d["actions"]) for key, d in document.items()}


def _plan_from(row: RowMapping) -> Plan:
    price = None
    if row["price_amount"] is not None:
        price = Price(
            _money(row["price_amount"]),
            row["price_currency"],
            BillingCycle(row["cycle_unit"], row["cycle_every"]),
        )
    return Plan(
        key=row["key"],
        name=row["name"],
        limits={name: Limit(**d) for name, d in row["limits"].items()},
        features=_features_from(row["features"]),
        price=price,
        trial_days=row["trial_days"],
        status=row["status"],
        owner_kinds=frozenset(row["owner_kinds"]),
        version=row["version"],
        revision=row["revision"],
    )


def _money(value: Any) -> Decimal:
    """Numeric columns pad amounts to their scale (49.900000): drop the padding but keep
    two decimals (49.90), as money is usually written."""
    amount = Decimal(value)
    trimmed = amount.normalize()
    exponent = trimmed.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        return amount.quantize(Decimal("0.01"))
    return trimmed


def _version_row(plan: Plan) -> dict[str, Any]:
    return {
        "plan_key": plan.key,
        "version": plan.version,
        "limits": _limits_document(plan),
        "features": _features_document(plan.features),
        "price_amount": None if plan.price is None else plan.price.amount,
        "price_currency": None if plan.price is None else plan.price.currency,
        "cycle_unit": None if plan.price is None else plan.price.cycle.unit.value,
        "cycle_every": None if plan.price is None else plan.price.cycle.every,
        "trial_days": plan.trial_days,
    }


# -- subscriptions -------------------------------------------------------------------


def _addons_document(addons: Iterable[AddOn]) -> list[dict[str, Any]]:
    return [
        {
            "key": a.key,
            "limits": dict(a.limits),
            "features": _features_document(a.features),
            "quantity": a.quantity,
        }
        for a in addons
    ]


def _subscription_row(sub: Subscription) -> dict[str, Any]:
    period = sub.current_period
    return {
        "id": sub.id,
        "tenant": _tenant(sub.owner.tenant),
        "owner_kind": sub.owner.kind,
        "owner_id": sub.owner.id,
        "live_owner": None if sub.is_terminal else live_owner_key(sub.owner),
        "plan_key": sub.plan_key,
        "plan_version": sub.plan_version,
        "status": sub.status.value,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "seats": sub.seats,
        "trial_ends_at": sub.trial_ends_at,
        "period_start": None if period is None else period.start,
        "period_end": None if period is None else period.end,
        "cycle_unit": None if sub.cycle is None else sub.cycle.unit.value,
        "cycle_every": None if sub.cycle is None else sub.cycle.every,
        "cycle_anchor": sub.cycle_anchor,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": sub.canceled_at,
        "expires_at": sub.expires_at,
        "past_due_since": sub.past_due_since,
        "suspended_from": None if sub.suspended_from is None else sub.suspended_from.value,
        "external_id": sub.external_id,
        "metadata": dict(sub.metadata),
        "notes": sub.notes,
        "addons": _addons_document(sub.addons),
        "revision": sub.revision,
        "next_change_at": sub.next_change_at(),
    }


def _subscription_from(row: RowMapping) -> Subscription:
    period = None if row["period_start"] is None else Period(row["period_start"], row["period_end"])
    cycle = (
        None if row["cycle_unit"] is None else BillingCycle(row["cycle_unit"], row["cycle_every"])
    )
    addons = tuple(
        AddOn(a["key"], a["limits"], _features_from(a["features"]), a["quantity"])
        for a in row["addons"]
    )
    return Subscription(
        id=row["id"],
        owner=_owner_of(row),
        plan_key=row["plan_key"],
        plan_version=row["plan_version"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        seats=row["seats"],
        trial_ends_at=row["trial_ends_at"],
        current_period=period,
        cycle=cycle,
        cycle_anchor=row["cycle_anchor"],
        cancel_at_period_end=bool(row["cancel_at_period_end"]),
        canceled_at=row["canceled_at"],
        expires_at=row["expires_at"],
        past_due_since=row["past_due_since"],
        suspended_from=row["suspended_from"],
        external_id=row["external_id"],
        metadata=row["metadata"],
        notes=row["notes"],
        addons=addons,
        revision=row["revision"],
    )


def _override_from(row: RowMapping) -> Override:
    return Override(
        owner=_owner_of(row),
        kind=row["kind"],
        key=row["key"],
        reason=row["reason"],
        actor=row["actor"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        enabled=bool(row["enabled"]),
        actions=None if row["actions"] is None else frozenset(row["actions"]),
        value=row["value"],
    )


def _audit_from(row: RowMapping) -> AuditEvent:
    owner = None if row["owner_kind"] is None else _owner_of(row)
    return AuditEvent(
        id=row["id"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        owner=owner,
        before=row["before"],
        after=row["after"],
        reason=row["reason"],
    )


class _Repository:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    @property
    def _conn(self) -> Connection:
        return self._uow.connection

    @property
    def _t(self) -> str:
        return _tenant(self._uow.tenant)

    def _scope(self, owner: Owner) -> Owner:
        if owner.tenant != self._uow.tenant:
            raise InvalidInput(
                "owner.tenant",
                f"{owner} belongs to tenant {owner.tenant!r}, not to this unit of work's tenant {self._uow.tenant!r}",
            )
        return owner

    def _rows(self, statement: sa.Executable) -> Sequence[RowMapping]:
        return self._conn.execute(statement).mappings().all()


_PLAN_COLUMNS = (
    t.plans.c.key,
    t.plans.c.name,
    t.plans.c.status,
    t.plans.c.owner_kinds,
    t.plans.c.revision,
    t.plan_versions.c.version,
    t.plan_versions.c.limits,
    t.plan_versions.c.features,
    t.plan_versions.c.price_amount,
    t.plan_versions.c.price_currency,
    t.plan_versions.c.cycle_unit,
    t.plan_versions.c.cycle_every,
    t.plan_versions.c.trial_days,
)
_PLAN_JOIN = t.plans.join(t.plan_versions, t.plan_versions.c.plan_key == t.plans.c.key)

# the statements of a cold resolution, built once (building a statement costs as much as
# running it on SQLite)
_LATEST_PLAN = (
    sa.select(*_PLAN_COLUMNS)
    .select_from(_PLAN_JOIN)
    .where(
        t.plans.c.key == sa.bindparam("key"), t.plan_versions.c.version == t.plans.c.latest_version
    )
)
_PLAN_VERSION = (
    sa.select(*_PLAN_COLUMNS)
    .select_from(_PLAN_JOIN)
    .where(
        t.plans.c.key == sa.bindparam("key"), t.plan_versions.c.version == sa.bindparam("version")
    )
)
_CURRENT_SUBSCRIPTION = (
    sa.select(t.subscriptions)
    .where(
        t.subscriptions.c.tenant == sa.bindparam("tenant"),
        t.subscriptions.c.owner_kind == sa.bindparam("kind"),
        t.subscriptions.c.owner_id == sa.bindparam("id"),
    )
    .order_by(t.subscriptions.c.pk.desc())
    .limit(1)
)
_OWNER_OVERRIDES = sa.select(t.overrides).where(
    t.overrides.c.tenant == sa.bindparam("tenant"),
    t.overrides.c.owner_kind == sa.bindparam("kind"),
    t.overrides.c.owner_id == sa.bindparam("id"),
)


class _Plans(_Repository):
    def _select(self) -> sa.Select[Any]:
        return sa.select(*_PLAN_COLUMNS).select_from(_PLAN_JOIN)

    @storage_errors
    def get(self, key: str, version: int | None = None) -> Plan:
        if version is None:
            rows = self._conn.execute(_LATEST_PLAN, {"key": key}).mappings().all()
        else:
            rows = (
                self._conn.execute(_PLAN_VERSION, {"key": key, "version": version}).mappings().all()
            )
        if not rows:
            if version is not None and self.find(key) is not None:
                raise UnknownPlan(key, version)
            raise UnknownPlan(key)
        return _plan_from(rows[0])

    @storage_errors
    def find(self, key: str) -> Plan | None:
        rows = self._rows(
            self._select().where(
                t.plans.c.key == key, t.plan_versions.c.version == t.plans.c.latest_version
            )
        )
        return _plan_from(rows[0]) if rows else None

    @storage_errors
    def list(self) -> Sequence[Plan]:
        statement = self._select().where(t.plan_versions.c.version == t.plans.c.latest_version)
        # sorted here, not by the database: collations differ between engines and locales
        return sorted((_plan_from(r) for r in self._rows(statement)), key=lambda p: p.key)

    @storage_errors
    def versions(self, key: str) -> Sequence[Plan]:
        rows = self._rows(
            self._select().where(t.plans.c.key == key).order_by(t.plan_versions.c.version)
        )
        if not rows:
            raise UnknownPlan(key)
        return [_plan_from(r) for r in rows]

    @storage_errors
    def add(self, plan: Plan) -> Plan:
        if self._conn.execute(sa.select(t.plans.c.key).where(t.plans.c.key == plan.key)).first():
            raise PlanExists(plan.key)
        stored = attrs.evolve(plan, version=1, revision=1)
        try:
            with self._conn.begin_nested():
                self._conn.execute(
                    t.plans.insert().values(
                        key=stored.key,
                        name=stored.name,
                        status=stored.status.value,
                        owner_kinds=sorted(stored.owner_kinds),
                        latest_version=1,
                        revision=1,
                    )
                )
        except exc.IntegrityError:
            raise PlanExists(plan.key) from None
        self._conn.execute(t.plan_versions.insert().values(**_version_row(stored)))
        return stored

    @storage_errors
    def update(self, plan: Plan) -> Plan:
        head = self.find(plan.key)
        if head is None:
            raise UnknownPlan(plan.key)
        if plan.version not in (head.version, head.version + 1):
            raise InvalidInput(
                "plan.version", f"must be {head.version} or {head.version + 1}", plan.version
            )
        result = self._conn.execute(
            t.plans.update()
            .where(t.plans.c.key == plan.key, t.plans.c.revision == plan.revision)
            .values(
                name=plan.name,
                status=plan.status.value,
                owner_kinds=sorted(plan.owner_kinds),
                latest_version=plan.version,
                revision=plan.revision + 1,
            )
        )
        if result.rowcount != 1:
            raise StaleWrite("plan", plan.key, plan.revision)
        if plan.version == head.version + 1:
            self._conn.execute(t.plan_versions.insert().values(**_version_row(plan)))
            return attrs.evolve(plan, revision=plan.revision + 1)
        return attrs.evolve(
            head,
            name=plan.name,
            status=plan.status,
            owner_kinds=plan.owner_kinds,
            revision=plan.revision + 1,
        )


class _Subscriptions(_Repository):
    def _owner_filter(self, owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
        self._scope(owner)
        c = t.subscriptions.c
        return (c.tenant == self._t, c.owner_kind == owner.kind, c.owner_id == owner.id)

    @storage_errors
    def current(self, owner: Owner) -> Subscription | None:
        self._scope(owner)
        params = {"tenant": self._t, "kind": owner.kind, "id": owner.id}
        rows = self._conn.execute(_CURRENT_SUBSCRIPTION, params).mappings().all()
        return _subscription_from(rows[0]) if rows else None

    @storage_errors
    def get(self, subscription_id: str) -> Subscription:
        c = t.subscriptions.c
        rows = self._rows(
            sa.select(t.subscriptions).where(c.id == subscription_id, c.tenant == self._t)
        )
        if not rows:
            raise NotFound(f"subscription {subscription_id} does not exist")
        return _subscription_from(rows[0])

    @storage_errors
    def history(self, owner: Owner) -> Sequence[Subscription]:
        rows = self._rows(
            sa.select(t.subscriptions)
            .where(*self._owner_filter(owner))
            .order_by(t.subscriptions.c.pk)
        )
        return [_subscription_from(r) for r in rows]

    @storage_errors
    def add(self, subscription: Subscription) -> Subscription:
        owner = self._scope(subscription.owner)
        current = self.current(owner)
        if current is not None and not current.is_terminal:
            raise SubscriptionExists(owner, current.status.value)
        stored = attrs.evolve(subscription, revision=1)
        try:
            with self._conn.begin_nested():
                self._conn.execute(t.subscriptions.insert().values(**_subscription_row(stored)))
        except exc.IntegrityError:
            # a concurrent writer's live subscription (the unique index on live_owner);
            # under snapshot isolation we may not see it, so do not require to
            winner = self.current(owner)
            status = (
                winner.status.value if winner is not None and not winner.is_terminal else "live"
            )
            raise SubscriptionExists(owner, status) from None
        return stored

    @storage_errors
    def update(self, subscription: Subscription) -> Subscription:
        self._scope(subscription.owner)
        c = t.subscriptions.c
        stored = attrs.evolve(subscription, revision=subscription.revision + 1)
        row = _subscription_row(stored)
        del row["id"], row["tenant"], row["owner_kind"], row["owner_id"]
        result = self._conn.execute(
            t.subscriptions.update()
            .where(
                c.id == subscription.id,
                c.tenant == self._t,
                c.owner_kind == subscription.owner.kind,
                c.owner_id == subscription.owner.id,
                c.revision == subscription.revision,
            )
            .values(**row)
        )
        if result.rowcount == 1:
            return stored
        existing = self.get(subscription.id)
        if existing.owner != subscription.owner:
            raise InvalidInput(
                "owner", "a subscription cannot move to another owner", subscription.owner
            )
        raise StaleWrite("subscription", subscription.id, subscription.revision)

    @storage_errors
    def due(self, now: datetime, limit: int = 500) -> Sequence[Subscription]:
        c = t.subscriptions.c
        rows = self._rows(
            sa.select(t.subscriptions)
            .where(c.tenant == self._t, c.next_change_at <= now)
            .order_by(c.next_change_at, c.pk)
            .limit(limit)
        )
        return [_subscription_from(r) for r in rows]

    @storage_errors
    def count_on_plans(self, plan_keys: Iterable[str], exclude_owner: Owner | None = None) -> int:
        c = t.subscriptions.c
        conditions = [
            c.tenant == self._t,
            c.plan_key.in_(list(plan_keys)),
            c.live_owner.is_not(None),
        ]
        if exclude_owner is not None:
            conditions.append(
                sa.not_(sa.and_(c.owner_kind == exclude_owner.kind, c.owner_id == exclude_owner.id))
            )
        count = self._conn.execute(
            sa.select(sa.func.count()).select_from(t.subscriptions).where(*conditions)
        )
        return int(count.scalar_one())


class _Overrides(_Repository):
    def _owner_filter(self, owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
        self._scope(owner)
        c = t.overrides.c
        return (c.tenant == self._t, c.owner_kind == owner.kind, c.owner_id == owner.id)

    @storage_errors
    def for_owner(self, owner: Owner) -> Sequence[Override]:
        self._scope(owner)
        params = {"tenant": self._t, "kind": owner.kind, "id": owner.id}
        rows = self._conn.execute(_OWNER_OVERRIDES, params).mappings().all()
        return sorted((_override_from(r) for r in rows), key=lambda o: (o.kind, o.key))

    def _find(self, owner: Owner, kind: OverrideKind, key: str) -> Override | None:
        c = t.overrides.c
        rows = self._rows(
            sa.select(t.overrides).where(
                *self._owner_filter(owner), c.kind == kind.value, c.key == key
            )
        )
        return _override_from(rows[0]) if rows else None

    @storage_errors
    def put(self, override: Override) -> Override | None:
        owner = override.owner
        replaced = self._find(owner, override.kind, override.key)
        values = {
            "reason": override.reason,
            "actor": override.actor,
            "created_at": override.created_at,
            "expires_at": override.expires_at,
            "enabled": override.enabled,
            "actions": None if override.actions is None else sorted(override.actions),
            "value": override.value,
        }
        c = t.overrides.c
        if replaced is None:
            self._conn.execute(
                t.overrides.insert().values(
                    tenant=self._t,
                    owner_kind=owner.kind,
                    owner_id=owner.id,
                    kind=override.kind.value,
                    key=override.key,
                    **values,
                )
            )
        else:
            self._conn.execute(
                t.overrides.update()
                .where(
                    *self._owner_filter(owner), c.kind == override.kind.value, c.key == override.key
                )
                .values(**values)
            )
        return replaced

    @storage_errors
    def remove(self, owner: Owner, kind: OverrideKind, key: str) -> Override:
        found = self._find(owner, kind, key)
        if found is None:
            raise OverrideNotFound(owner, f"{kind.value} {key}")
        c = t.overrides.c
        self._conn.execute(
            t.overrides.delete().where(
                *self._owner_filter(owner), c.kind == kind.value, c.key == key
            )
        )
        return found

    @storage_errors
    def expired(self, now: datetime, limit: int = 500) -> Sequence[Override]:
        c = t.overrides.c
        rows = self._rows(
            sa.select(t.overrides)
            .where(c.tenant == self._t, c.expires_at <= now)
            .order_by(c.expires_at, c.owner_kind, c.owner_id, c.kind, c.key)
            .limit(limit)
        )
        found = [_override_from(r) for r in rows]
        return sorted(found, key=lambda o: (o.expires_at, o.owner.kind, o.owner.id, o.kind, o.key))


class _Audit(_Repository):
    @storage_errors
    def append(self, event: AuditEvent) -> None:
        if event.owner is not None:
            self._scope(event.owner)
        self._conn.execute(
            t.audit_events.insert().values(
                id=event.id,
                tenant=self._t,
                at=event.at,
                actor=event.actor,
                action=event.action,
                target=event.target,
                owner_kind=None if event.owner is None else event.owner.kind,
                owner_id=None if event.owner is None else event.owner.id,
                before=None if event.before is None else dict(event.before),
                after=None if event.after is None else dict(event.after),
                reason=event.reason,
            )
        )

    @storage_errors
    def for_owner(self, owner: Owner) -> Sequence[AuditEvent]:
        self._scope(owner)
        c = t.audit_events.c
        rows = self._rows(
            sa.select(t.audit_events)
            .where(c.tenant == self._t, c.owner_kind == owner.kind, c.owner_id == owner.id)
            .order_by(c.pk)
        )
        return [_audit_from(r) for r in rows]

    @storage_errors
    def for_target(self, target: str) -> Sequence[AuditEvent]:
        c = t.audit_events.c
        rows = self._rows(
            sa.select(t.audit_events)
            .where(c.target == target, sa.or_(c.tenant == self._t, c.owner_kind.is_(None)))
            .order_by(c.pk)
        )
        return [_audit_from(r) for r in rows]


class SqlUnitOfWork:
    """One transaction (or, inside the host's transaction, one savepoint)."""

    def __init__(
        self,
        store: SqlStore,
        tenant: str | None,
        join: Connection | Session | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        self.tenant = tenant
        self._store = store
        self._join = join
        self._read_only = read_only
        self._connection: Connection | None = None
        self._transaction: sa.Transaction | None = None
        self._owns_connection = False
        self._inside_host = False
        self.plans = _Plans(self)
        self.subscriptions = _Subscriptions(self)
        self.overrides = _Overrides(self)
        self.audit = _Audit(self)

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise StorageError("the unit of work is not open; use it in a `with` block")
        return self._connection

    @storage_errors
    def __enter__(self) -> SqlUnitOfWork:
        connection, owned = self._store._acquire(self._join)
        self._connection, self._owns_connection = connection, owned
        try:
            self._inside_host = connection.in_transaction()
            connection.info[READ_ONLY] = self._read_only
            self._transaction = (
                connection.begin_nested() if self._inside_host else connection.begin()
            )
        except BaseException:
            if owned:
                connection.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        except exc.SQLAlchemyError:
            if exc_type is None:
                raise
        finally:
            self._transaction = None
            if self._owns_connection and self._connection is not None:
                self._connection.close()
            self._connection = None

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.connection.begin_nested():
            yield

    @storage_errors
    def commit(self) -> None:
        if self._transaction is None:
            raise StorageError("the unit of work is not open")
        self._transaction.commit()

    @storage_errors
    def rollback(self) -> None:
        if self._transaction is not None and self._transaction.is_active:
            self._transaction.rollback()

    def when_durable(self, callback: Callable[[], None]) -> None:
        if not self._inside_host:
            callback()
            return
        host: Connection | Session = self._join or self._store._session or self.connection
        committed_event, rolled_back_event = (
            ("after_commit", "after_rollback")
            if isinstance(host, Session)
            else ("commit", "rollback")
        )

        settled = False

        def on_commit(*_: Any) -> None:
            nonlocal settled
            if not settled:
                settled = True
                callback()

        def on_rollback(*_: Any) -> None:
            nonlocal settled
            settled = True

        # once=True: each listener removes itself when it fires; the flag makes the one
        # left over (fired at the host's next transaction end) do nothing
        event.listen(host, committed_event, on_commit, once=True)
        event.listen(host, rolled_back_event, on_rollback, once=True)


def _sqlite_transactions(engine: Engine) -> None:
    """pysqlite's own transaction handling breaks SAVEPOINT; take it over (the recipe in
    SQLAlchemy's SQLite docs), start write transactions with BEGIN IMMEDIATE so that
    concurrent writers queue on the busy timeout instead of failing to upgrade a read
    lock, and turn foreign keys on."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN" if connection.info.get(READ_ONLY) else "BEGIN IMMEDIATE")


class SqlStore:
    """The production store. See the module docstring for the ways to bind it."""

    def __init__(self, bind: Engine | Connection | Session) -> None:
        if isinstance(bind, Session):
            bound = bind.get_bind()
            self._session: Session | None = bind
            self._connection: Connection | None = None
            self.engine: Engine = bound if isinstance(bound, Engine) else bound.engine
        elif isinstance(bind, Connection):
            self._session, self._connection, self.engine = None, bind, bind.engine
        elif isinstance(bind, Engine):
            self._session, self._connection, self.engine = None, None, bind
        else:
            raise InvalidInput("bind", "must be a SQLAlchemy Engine, Connection or Session", bind)

    @classmethod
    def from_url(cls, url: str, **engine_options: Any) -> SqlStore:
        """``sqlite:///entitlements.db``, ``postgresql+psycopg://...``, ``mysql+pymysql://...``"""
        try:
            engine = sa.create_engine(url, **engine_options)
        except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
            raise InvalidInput("url", f"cannot open {url!r}: {error}", url) from error
        if engine.dialect.name == "sqlite":
            _sqlite_transactions(engine)
        return cls(engine)

    def _acquire(self, join: Connection | Session | None = None) -> tuple[Connection, bool]:
        if isinstance(join, Session):
            return join.connection(), False
        if isinstance(join, Connection):
            return join, False
        if join is not None:
            raise InvalidInput("join", "must be a SQLAlchemy Connection or Session", join)
        if self._session is not None:
            return self._session.connection(), False
        if self._connection is not None:
            return self._connection, False
        return self.engine.connect(), True

    def unit_of_work(
        self, tenant: str | None, join: object | None = None, *, read_only: bool = False
    ) -> SqlUnitOfWork:
        if join is not None and not isinstance(join, Connection | Session):
            raise InvalidInput("join", "must be a SQLAlchemy Connection or Session", join)
        return SqlUnitOfWork(self, tenant, join, read_only=read_only)

    @storage_errors
    def tenants(self) -> Sequence[str | None]:
        with self.unit_of_work(None, read_only=True) as uow:
            query = sa.union(
                sa.select(t.subscriptions.c.tenant).distinct(),
                sa.select(t.overrides.c.tenant).distinct(),
            )
            found = {row[0] or None for row in uow.connection.execute(query)}
        return sorted(found, key=lambda x: (x is not None, x or ""))

    @storage_errors
    def create_schema(self) -> None:
        """Bring the database to the latest schema with the shipped migrations."""
        from entitlements.adapters.sql import migrations

        connection, owned = self._acquire()
        try:
            migrations.upgrade(connection)
            if owned:
                connection.commit()
        finally:
            if owned:
                connection.close()

    @storage_errors
    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every stored row, ordered: tests compare dumps to prove a failed call changed
        nothing."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.unit_of_work(None, read_only=True) as uow:
            for table in t.metadata.sorted_tables:
                rows = uow.connection.execute(sa.select(table)).all()
                out[table.name] = sorted((tuple(r) for r in rows), key=repr)
        return out
