"""Subscriptions in SQL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.history import SUBSCRIPTION_AT, flush_history, log_subscription
from entitlements.adapters.sql.history import params as history_params
from entitlements.adapters.sql.plans import (
    PLAN_COLUMNS,
    PLAN_JOIN,
    features_document,
    features_from,
    plan_versions_bound,
    plan_versions_wanted,
)
from entitlements.adapters.sql.repository import (
    Repository,
    live_owner_key,
    owner_of,
    owners_among,
    same_named,
    storage_errors,
    tenant_of,
)
from entitlements.adapters.sql.search import INDEXED_BY, needle_grams, postings, write_postings
from entitlements.adapters.sql.status_counts import ADDED, CHANGED, MOVED, STORED, counted, fold
from entitlements.domain.addon import AddOn
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.contracts.link import ContractLink
from entitlements.domain.due import next_change_at
from entitlements.domain.instant import Period
from entitlements.domain.owner import Owner
from entitlements.domain.scheduled import Pause, PendingChange
from entitlements.domain.subscription import Subscription, SubscriptionStatus, with_changes
from entitlements.errors import InvalidInput, NotFound, StaleWrite, SubscriptionExists

__all__ = ["SEARCHED", "SqlSubscriptions", "subscription_from", "subscription_row"]

SEARCHED = 5000
"""Rows a text search looks at for one page, at most: its cost stays that of a page."""
_WEIGHED = 64
"""A needle's trigrams are weighed by their newest postings, this many each: the one
whose last of them lies furthest back is the sparsest where a page reads."""
_FIRST_WINDOW = 4
"""Where a window is built whole, a page's first holds this many candidates per row the
page wants."""
_Window = Callable[[int | None, int], sa.Subquery]
"""The newest candidates of a text search below a pk (``None``: from the newest), so
many at most."""


def _addon_document(a: AddOn) -> dict[str, Any]:
    doc = {
        "key": a.key,
        "limits": dict(a.limits),
        "features": features_document(a.features),
        "quantity": a.quantity,
        "ends_at": None if a.ends_at is None else a.ends_at.isoformat(),
    }
    if a.alerts:  # written only when set: documents of add-ons without stay as they were
        doc["alerts"] = {name: list(p) for name, p in a.alerts.items()}
    return doc


def _addons_document(addons: Iterable[AddOn]) -> list[dict[str, Any]]:
    return [_addon_document(a) for a in addons]


def _addons_from(document: Iterable[Any]) -> tuple[AddOn, ...]:
    return tuple(
        AddOn(
            a["key"],
            a["limits"],
            features_from(a["features"]),
            a["quantity"],
            None if a.get("ends_at") is None else datetime.fromisoformat(a["ends_at"]),
            a.get("alerts", {}),
        )
        for a in document
    )


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _instant_from(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _scheduled_document(pending: PendingChange | None) -> dict[str, Any] | None:
    if pending is None:
        return None
    cycle = pending.cycle
    return {
        "kind": pending.kind.value,
        "at": pending.at.isoformat(),
        "requested_at": _instant(pending.requested_at),
        "requested_by": pending.requested_by,
        "reason": pending.reason,
        "request_revision": pending.request_revision,
        "plan_key": pending.plan_key,
        "plan_version": pending.plan_version,
        "seats": pending.seats,
        "addons": None if pending.addons is None else _addons_document(pending.addons),
        "cycle": None if cycle is None else [cycle.unit.value, cycle.every],
        "resume_at": _instant(pending.resume_at),
        "restart_period": pending.restart_period,
        "if_over_quota": pending.if_over_quota,
    }


def _scheduled_from(document: Any) -> PendingChange | None:
    if document is None:
        return None
    d = dict(document)
    cycle = d.pop("cycle")
    addons = d.pop("addons")
    for name in ("at", "requested_at", "resume_at"):
        d[name] = _instant_from(d[name])
    return PendingChange(
        cycle=None if cycle is None else BillingCycle(cycle[0], cycle[1]),
        addons=None if addons is None else _addons_from(addons),
        **d,
    )


def _pause_document(pause: Pause | None) -> dict[str, Any] | None:
    if pause is None:
        return None
    return {
        "since": pause.since.isoformat(),
        "until": _instant(pause.until),
        "restart_period": pause.restart_period,
        "requested_by": pause.requested_by,
        "reason": pause.reason,
    }


def _pause_from(document: Any) -> Pause | None:
    if document is None:
        return None
    d = dict(document)
    return Pause(
        datetime.fromisoformat(d["since"]),
        _instant_from(d["until"]),
        d["restart_period"],
        d["requested_by"],
        d["reason"],
    )


def subscription_row(sub: Subscription) -> dict[str, Any]:
    period = sub.current_period
    return {
        "id": sub.id,
        "tenant": tenant_of(sub.owner.tenant),
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
        "next_change_at": next_change_at(sub),
        "plan_manager": sub.plan_manager,
        "contract": None if sub.contract is None else sub.contract.document(),
        "scheduled": _scheduled_document(sub.scheduled),
        "pause": _pause_document(sub.pause),
        "payment_due_at": sub.payment_due_at,
    }


_IDENTITY = ("id", "tenant", "owner_kind", "owner_id")
_WRITTEN = tuple(c.name for c in t.subscriptions.c if c.name not in ("pk", *_IDENTITY))
_AT_REVISION = (
    t.subscriptions.c.id == sa.bindparam("p_id"),
    t.subscriptions.c.tenant == sa.bindparam("p_tenant"),
    t.subscriptions.c.owner_kind == sa.bindparam("p_kind"),
    t.subscriptions.c.owner_id == sa.bindparam("p_owner"),
    t.subscriptions.c.revision == sa.bindparam("p_revision"),
)
_UPDATE = (
    t.subscriptions.update()
    .where(*_AT_REVISION)
    .values({name: sa.bindparam(f"v_{name}") for name in _WRITTEN})
)
"""A subscription's new state, if it is still at the revision it was read at: built once,
not per write."""


@cache
def _update_of(columns: tuple[str, ...]) -> sa.Update:
    """`_UPDATE` writing ``columns`` alone (each of `_WRITTEN`, in its order)."""
    if columns == _WRITTEN:
        return _UPDATE
    return (
        t.subscriptions.update()
        .where(*_AT_REVISION)
        .values({name: sa.bindparam(f"v_{name}") for name in columns})
    )


_SAME_REVISION = sa.select(t.subscriptions.c.pk).where(*_AT_REVISION)


def _revision_params(subscription: Subscription) -> dict[str, Any]:
    """`_UPDATE`'s conditions: the subscription, its owner and the revision it was read at."""
    return {
        "p_id": subscription.id,
        "p_tenant": tenant_of(subscription.owner.tenant),
        "p_kind": subscription.owner.kind,
        "p_owner": subscription.owner.id,
        "p_revision": subscription.revision,
    }


_h = t.subscription_history.c
_WRITTEN_BETWEEN = (
    sa.select(_h.effective_at)
    .where(
        _h.tenant == sa.bindparam("tenant"),
        _h.owner_kind == sa.bindparam("kind"),
        _h.owner_id == sa.bindparam("id"),
        _h.effective_at > sa.bindparam("when", type_=_h.effective_at.type),
        _h.effective_at < sa.bindparam("end", type_=_h.effective_at.type),
    )
    .distinct()
    .order_by(_h.effective_at)
)
"""The instants after ``when`` and before ``end`` at which the owner's history changed."""

_HISTORY_KEYS = sa.select(
    _h.effective_at, _h.owner_kind, _h.owner_id, _h.created_at, _h.seq, _h.id
).where(
    _h.tenant == sa.bindparam("tenant"),
    _h.effective_at < sa.bindparam("end", type_=_h.effective_at.type),
)


class _HistoryKey(NamedTuple):
    effective_at: datetime
    created_at: datetime
    seq: int
    id: str


def _at(keys: Sequence[_HistoryKey], when: datetime) -> int | None:
    """The ``seq`` of the history row `SUBSCRIPTION_AT` reads at ``when``: of the
    subscription created last by then, the stretch written last by then."""
    known = [k for k in keys if k.effective_at <= when]
    if not known:
        return None
    newest = max(known, key=lambda k: (k.created_at, k.seq)).id
    return max((k for k in known if k.id == newest), key=lambda k: (k.effective_at, k.seq)).seq


def _picks(
    keys: Sequence[_HistoryKey], start: datetime, end: datetime
) -> list[tuple[datetime, int | None]]:
    """What `states` reads, as history rows: at ``start``, then at each instant the
    history changed after it and before ``end``."""
    instants = sorted({k.effective_at for k in keys if start < k.effective_at < end})
    return [(at, _at(keys, at)) for at in [start, *instants]]


# the subscription fields stored unchanged in the column of the same name
_SAME_NAMED = (
    "id",
    "plan_key",
    "plan_version",
    "status",
    "created_at",
    "updated_at",
    "seats",
    "trial_ends_at",
    "cycle_anchor",
    "canceled_at",
    "expires_at",
    "past_due_since",
    "suspended_from",
    "external_id",
    "metadata",
    "notes",
    "revision",
    "plan_manager",
    "payment_due_at",
)


def subscription_from(row: RowMapping) -> Subscription:
    period = None if row["period_start"] is None else Period(row["period_start"], row["period_end"])
    cycle = (
        None if row["cycle_unit"] is None else BillingCycle(row["cycle_unit"], row["cycle_every"])
    )
    return Subscription(
        owner=owner_of(row),
        current_period=period,
        cycle=cycle,
        cancel_at_period_end=bool(row["cancel_at_period_end"]),
        addons=_addons_from(row["addons"]),
        contract=ContractLink.from_document(row["contract"]),
        scheduled=_scheduled_from(row["scheduled"]),
        pause=_pause_from(row["pause"]),
        **same_named(row, *_SAME_NAMED),
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


_LATEST = _CURRENT_SUBSCRIPTION.subquery("latest")
_o = t.overrides.c
_CURRENT_WITH_OVERRIDES = sa.select(
    _LATEST, *(column.label(f"override_{column.name}") for column in t.overrides.c)
).select_from(
    _LATEST.outerjoin(
        t.overrides,
        sa.and_(
            _o.tenant == _LATEST.c.tenant,
            _o.owner_kind == _LATEST.c.owner_kind,
            _o.owner_id == _LATEST.c.owner_id,
        ),
    )
)
_OVERRIDE_COLUMNS = [(f"override_{column.name}", column.name) for column in t.overrides.c]
_PLAN_ROW = (*PLAN_COLUMNS, t.plans.c.latest_version)
_PLAN_ROW_COLUMNS = [(f"plan_row_{column.name}", column.name) for column in _PLAN_ROW]


@cache
def _current_with_plans(latest: tuple[bool, ...]) -> sa.Select[Any]:
    """`_CURRENT_WITH_OVERRIDES` and, on each row, one of the plan versions: the one the
    subscription holds, and each wanted one (the latest, or a given version)."""
    held = sa.and_(
        t.plans.c.key == _LATEST.c.plan_key, t.plan_versions.c.version == _LATEST.c.plan_version
    )
    with_overrides = _LATEST.outerjoin(
        t.overrides,
        sa.and_(
            _o.tenant == _LATEST.c.tenant,
            _o.owner_kind == _LATEST.c.owner_kind,
            _o.owner_id == _LATEST.c.owner_id,
        ),
    )
    return sa.select(
        *_CURRENT_WITH_OVERRIDES.selected_columns,
        *(
            column.label(label)
            for column, (label, _) in zip(_PLAN_ROW, _PLAN_ROW_COLUMNS, strict=True)
        ),
    ).select_from(
        with_overrides.outerjoin(PLAN_JOIN, sa.or_(held, plan_versions_wanted(latest, "want_")))
    )


class SqlSubscriptions(Repository):
    def __init__(self, uow: Any) -> None:
        super().__init__(uow)
        self._ahead: dict[str, Subscription] = {}
        """Read by `read_ahead`, each answered once by `get` (and dropped by `update`)."""
        self._indexed: dict[str, tuple[int, tuple[str | None, ...]]] = {}
        """By subscription id, as read or written in this unit of work: the row's pk and
        the values the search postings hold (a write that keeps them writes none)."""
        self._statuses: dict[str, tuple[int, str]] = {}
        """By subscription id, as read in this unit of work: the revision and the status
        stored at it (what a write of it moves the status counts from)."""
        self._stored: dict[str, RowMapping] = {}
        """By subscription id, the row as read in this unit of work: a write of it at
        that revision writes only the columns that differ (`_changed_columns`)."""

    def _read(self, row: RowMapping) -> Subscription:
        self._indexed[row["id"]] = (row["pk"], tuple(row[name] for name in INDEXED_BY))
        self._statuses[row["id"]] = (row["revision"], row["status"])
        self._stored[row["id"]] = row
        return subscription_from(row)

    def forget_indexed(self) -> None:
        """Forget which rows' postings are known written and which statuses are known
        stored (a rollback to a savepoint may have undone some writes): the next write
        of each writes its postings again and looks up the status it moves from."""
        self._indexed.clear()
        self._statuses.clear()
        self._stored.clear()

    def _index(self, written: Sequence[dict[str, Any]]) -> None:
        """Postings for the rows ``written`` (as `subscription_row` builds them) whose
        searched values changed since read, in this transaction."""
        changed = []
        unknown = []
        for row in written:
            values = tuple(row[name] for name in INDEXED_BY)
            known = self._indexed.get(row["id"])
            if known is None:
                unknown.append(row)
            elif known[1] != values:
                changed.append((row["tenant"], known[0], values))
                self._indexed[row["id"]] = (known[0], values)
        if unknown:
            c = t.subscriptions.c
            pks = dict(
                self._conn.execute(
                    sa.select(c.id, c.pk).where(
                        c.tenant == self._t, c.id.in_([row["id"] for row in unknown])
                    )
                ).all()
            )
            for row in unknown:
                values = tuple(row[name] for name in INDEXED_BY)
                if row["id"] in pks:
                    changed.append((row["tenant"], pks[row["id"]], values))
                    self._indexed[row["id"]] = (pks[row["id"]], values)
        write_postings(self._conn, postings(changed))

    def _owner_filter(self, owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
        return self._owned(t.subscriptions, owner)

    @storage_errors
    def current(
        self, owner: Owner, *, with_plans: Sequence[tuple[str, int | None]] = ()
    ) -> Subscription | None:
        self._scope(owner)
        params: dict[str, Any] = {"tenant": self._t, "kind": owner.kind, "id": owner.id}
        if owner not in self._uow.bumped:
            rows = self._conn.execute(_CURRENT_SUBSCRIPTION, params).mappings().all()
            return self._read(rows[0]) if rows else None
        # a terms write holds the owner's terms lock, so no one else can change its
        # overrides before it commits: they come with the subscription, for the
        # resolution the write checks itself against, and so do the plan versions the
        # write compares (plan versions never change; a plan's own fields change only by
        # a write, which drops what was read)
        wanted, latest = plan_versions_bound(with_plans, "want_")
        rows = self._conn.execute(_current_with_plans(latest), params | wanted).mappings().all()
        if not rows:
            return None
        overrides = {}
        plans = {}
        for row in rows:
            if row["override_kind"] is not None:
                found = {name: row[label] for label, name in _OVERRIDE_COLUMNS}
                overrides[(found["kind"], found["key"])] = found
            if row["plan_row_key"] is not None:
                plan = {name: row[label] for label, name in _PLAN_ROW_COLUMNS}
                plans[(plan["key"], plan["version"])] = plan
        self._uow.overrides.preload(owner, list(overrides.values()))
        self._uow.plans.preload(list(plans.values()))
        return self._read(rows[0])

    @storage_errors
    def read_ahead(self, subscription_ids: Sequence[str]) -> None:
        c = t.subscriptions.c
        rows = self._rows(
            sa.select(t.subscriptions).where(c.tenant == self._t, c.id.in_(list(subscription_ids)))
        )
        self._ahead.update((r["id"], self._read(r)) for r in rows)

    @storage_errors
    def current_many(
        self, owners: Sequence[Owner], *, with_plans: Sequence[tuple[str, int | None]] = ()
    ) -> Mapping[Owner, Subscription]:
        owners = [self._scope(o) for o in owners]
        if not owners:
            return {}
        rows = [
            row
            for owned in owners_among(t.subscriptions, self._t, owners)
            for row in self._rows(sa.select(t.subscriptions).where(owned))
        ]
        # the newest of each owner's rows wins (ordered here: an ORDER BY on pk leads
        # SQLite to read the tenant's rows in pk order rather than seek each owner's)
        rows.sort(key=lambda row: int(row["pk"]))
        found = {(r["owner_kind"], r["owner_id"]): r for r in rows}
        if all(o in self._uow.bumped for o in owners):
            self._preload(owners, with_plans)
        return {o: self._read(found[(o.kind, o.id)]) for o in owners if (o.kind, o.id) in found}

    def _preload(
        self, owners: Sequence[Owner], with_plans: Sequence[tuple[str, int | None]]
    ) -> None:
        """Under every owner's terms lock (as `current` reads them): their overrides and
        the plan versions the caller compares come along, one read each."""
        self._uow.overrides.preload_many(owners)
        wanted = [w for w in with_plans if w[1] is not None]
        if wanted:
            self._uow.plans.keep(self._uow.plans.get_many(wanted))

    @storage_errors
    def get(self, subscription_id: str) -> Subscription:
        ahead = self._ahead.pop(subscription_id, None)
        if ahead is not None:
            return ahead
        c = t.subscriptions.c
        rows = self._rows(
            sa.select(t.subscriptions).where(c.id == subscription_id, c.tenant == self._t)
        )
        if not rows:
            raise NotFound(f"subscription {subscription_id} does not exist")
        return self._read(rows[0])

    @storage_errors
    def history(self, owner: Owner) -> Sequence[Subscription]:
        rows = self._rows(
            sa.select(t.subscriptions)
            .where(*self._owner_filter(owner))
            .order_by(t.subscriptions.c.pk)
        )
        return [subscription_from(r) for r in rows]

    @storage_errors
    def history_page(
        self, owner: Owner, after: int | None, limit: int
    ) -> Sequence[tuple[int, Subscription]]:
        c = t.subscriptions.c
        past = [] if after is None else [c.pk > after]
        rows = self._rows(
            sa.select(t.subscriptions)
            .where(*self._owner_filter(owner), *past)
            .order_by(c.pk)
            .limit(limit)
        )
        return [(r["pk"], subscription_from(r)) for r in rows]

    @storage_errors
    def add(self, subscription: Subscription) -> Subscription:
        owner = self._scope(subscription.owner)
        stored = with_changes(subscription, revision=1)
        self._uow.revisions.bump(owner)
        # the unique index on live_owner refuses a second live subscription, ours or a
        # concurrent writer's: the insert skips it, and only then do we look
        row = subscription_row(stored)
        pk = self._insert_unless_taken(t.subscriptions, row)
        if pk is None:
            winner = self.current(owner)
            status = (
                winner.status.value if winner is not None and not winner.is_terminal else "live"
            )
            raise SubscriptionExists(owner, status)
        log_subscription(self._uow, row)
        values = tuple(row[name] for name in INDEXED_BY)
        self._indexed[row["id"]] = (pk, values)
        write_postings(self._conn, postings([(row["tenant"], pk, values)]))
        self._conn.execute(
            ADDED,
            {
                "id": row["id"],
                "pk": pk,
                "tenant": row["tenant"],
                "kind": owner.kind,
                "owner": owner.id,
            },
        )
        return stored

    @storage_errors
    def update(self, subscription: Subscription) -> Subscription:
        stored, full, params = self._updated(subscription)
        before = self._stored_statuses([subscription])
        result = self._conn.execute(_UPDATE, params)
        if result.rowcount == 1:
            self._uow.revisions.bump(subscription.owner)
            log_subscription(self._uow, full)
            self._index([full])
            self._count([full], before)
            return stored
        existing = self.get(subscription.id)
        if existing.owner != subscription.owner:
            raise InvalidInput(
                "owner", "a subscription cannot move to another owner", subscription.owner
            )
        raise StaleWrite("subscription", subscription.id, subscription.revision)

    @storage_errors
    def update_many(self, subscriptions: Sequence[Subscription]) -> Sequence[Subscription]:
        if len(subscriptions) < 2 or not self._conn.dialect.supports_sane_multi_rowcount:
            return [self.update(subscription) for subscription in subscriptions]
        stored, rows, params = zip(*map(self._updated, subscriptions), strict=True)
        before = self._stored_statuses(subscriptions)
        statement = _update_of(self._changed_columns(subscriptions, rows))
        if self._conn.execute(statement, list(params)).rowcount != len(params):
            self._refuse(stored)
        for subscription, full in zip(subscriptions, rows, strict=True):
            self._uow.revisions.bump(subscription.owner)
            log_subscription(self._uow, full)
        self._index(list(rows))
        self._count(list(rows), before)
        return list(stored)

    def _changed_columns(
        self, read: Sequence[Subscription], written: Sequence[dict[str, Any]]
    ) -> tuple[str, ...]:
        """The columns some of ``written`` changes from its row as read at the revision
        it is written at (every column when one was not read here): a group's one
        statement writes those alone."""
        changed: set[str] = set()
        for subscription, row in zip(read, written, strict=True):
            was = self._stored.pop(subscription.id, None)
            if was is None or was["revision"] != subscription.revision:
                return _WRITTEN
            changed.update(name for name in _WRITTEN if row[name] != was[name])
        return tuple(name for name in _WRITTEN if name in changed)

    def _stored_statuses(self, wanted: Sequence[Subscription]) -> dict[str, str]:
        """The status each of ``wanted`` is stored in at the revision it was read at (a
        write of it succeeds only at that revision): as read in this unit of work, or
        looked up for those read elsewhere."""
        found = {}
        unknown = []
        for sub in wanted:
            known = self._statuses.get(sub.id)
            if known is not None and known[0] == sub.revision:
                found[sub.id] = known[1]
            else:
                unknown.append((sub.id, sub.revision))
        if unknown:
            # by id alone, its unique index: SQLite seeks none with (id, revision) pairs
            c = t.subscriptions.c
            rows = self._conn.execute(
                sa.select(c.id, c.revision, c.status).where(
                    c.tenant == self._t, c.id.in_([pair[0] for pair in unknown])
                )
            )
            asked = set(unknown)
            found.update((row[0], row[2]) for row in rows if (row[0], row[1]) in asked)
        return found

    def _count(self, written: Sequence[dict[str, Any]], before: Mapping[str, str]) -> None:
        """The status counts' changes of the rows ``written`` whose status moved."""
        moved = [
            {"id": row["id"], "old": before[row["id"]], "new": row["status"]}
            for row in written
            if before.get(row["id"], row["status"]) != row["status"]
        ]
        for row in written:
            self._statuses[row["id"]] = (row["revision"], row["status"])
        if moved:
            self._conn.execute(CHANGED, moved)

    def _refuse(self, wanted: Sequence[Subscription]) -> NoReturn:
        """Raise what `update` would for the first of ``wanted`` (the new states) not at
        its new revision: it moved since it was read, or is another owner's. (One that
        moved by exactly one write since looks written: then the first is named.)"""
        for stored in wanted:
            if self._conn.execute(_SAME_REVISION, _revision_params(stored)).first() is None:
                existing = self.get(stored.id)
                if existing.owner != stored.owner:
                    raise InvalidInput(
                        "owner", "a subscription cannot move to another owner", stored.owner
                    )
                raise StaleWrite("subscription", stored.id, stored.revision - 1)
        raise StaleWrite("subscription", wanted[0].id, wanted[0].revision - 1)

    def _updated(
        self, subscription: Subscription
    ) -> tuple[Subscription, dict[str, Any], dict[str, Any]]:
        """The subscription as stored by `_UPDATE`, its row, and the statement's values
        (what `read_ahead` read of it is stale from now on)."""
        self._scope(subscription.owner)
        self._ahead.pop(subscription.id, None)
        stored = with_changes(subscription, revision=subscription.revision + 1)
        full = subscription_row(stored)
        params = {f"v_{name}": full[name] for name in _WRITTEN}
        params.update(_revision_params(subscription))
        return stored, full, params

    @storage_errors
    def at(self, owner: Owner, when: datetime) -> Subscription | None:
        self._scope(owner)
        flush_history(self._uow)
        found = self._conn.execute(
            SUBSCRIPTION_AT, history_params(self._uow, owner.kind, owner.id, when)
        )
        rows = found.mappings().all()
        return subscription_from(rows[0]) if rows else None

    @storage_errors
    def states(
        self, owner: Owner, start: datetime, end: datetime
    ) -> Sequence[tuple[datetime, Subscription | None]]:
        self._scope(owner)
        flush_history(self._uow)
        params = history_params(self._uow, owner.kind, owner.id, start)
        instants = self._conn.execute(_WRITTEN_BETWEEN, {**params, "end": end}).scalars()
        return [(at, self.at(owner, at)) for at in [start, *instants]]

    @storage_errors
    def states_many(
        self, wanted: Sequence[tuple[Owner, datetime, datetime]]
    ) -> Sequence[Sequence[tuple[datetime, Subscription | None]]]:
        """Two reads for all of ``wanted``: the keys of the owners' history up to the
        last end (which `at` picks from, as `SUBSCRIPTION_AT` does), then the rows
        picked."""
        if not wanted:
            return []
        keys = self._history_keys(
            [owner for owner, _, _ in wanted], max(end for _, _, end in wanted)
        )
        picked = [
            _picks(keys.get((owner.kind, owner.id), []), start, end) for owner, start, end in wanted
        ]
        rows = self._history_rows({seq for found in picked for _, seq in found})
        return [[(at, rows.get(seq)) for at, seq in found] for found in picked]

    def _history_keys(
        self, owners: Sequence[Owner], end: datetime
    ) -> dict[tuple[str, str], list[_HistoryKey]]:
        """The keys of the owners' history rows in force before ``end``, per owner."""
        scoped = list(dict.fromkeys(self._scope(owner) for owner in owners))
        flush_history(self._uow)
        keys: dict[tuple[str, str], list[_HistoryKey]] = {}
        for owned in owners_among(t.subscription_history, self._t, scoped):
            query = _HISTORY_KEYS.where(owned)
            for row in self._conn.execute(query, {"tenant": self._t, "end": end}).all():
                keys.setdefault((row.owner_kind, row.owner_id), []).append(
                    _HistoryKey(row.effective_at, row.created_at, row.seq, row.id)
                )
        return keys

    def _history_rows(self, seqs: set[int | None]) -> dict[int | None, Subscription]:
        wanted = sorted(seq for seq in seqs if seq is not None)
        if not wanted:
            return {}
        query = sa.select(t.subscription_history).where(_h.seq.in_(wanted))
        return {row["seq"]: subscription_from(row) for row in self._rows(query)}

    @storage_errors
    def due(
        self,
        now: datetime,
        limit: int = 500,
        statuses: frozenset[SubscriptionStatus] | None = None,
    ) -> Sequence[Subscription]:
        c = t.subscriptions.c
        where = [c.next_change_at <= now]
        if statuses is not None:
            where.append(c.status.in_(sorted(s.value for s in statuses)))
        rows = self._batch(t.subscriptions, where, [c.next_change_at, c.pk], limit)
        return [self._read(r) for r in rows]

    @storage_errors
    def due_ids(self, now: datetime, limit: int = 500) -> Sequence[tuple[str, Owner]]:
        c = t.subscriptions.c
        rows = self._conn.execute(
            sa.select(c.id, c.owner_kind, c.owner_id)
            .where(c.tenant == self._t, c.next_change_at <= now)
            .order_by(c.next_change_at, c.pk)
            .limit(limit)
        )
        tenant = self._t or None
        return [(id_, Owner(kind, owner_id, tenant)) for id_, kind, owner_id in rows]

    @storage_errors
    def status_counts(self, now: datetime) -> tuple[Mapping[str, int], Sequence[Subscription]]:
        stored = counted(self._conn.execute(STORED, {"tenant": self._t}))
        moved = self._conn.execute(MOVED, {"tenant": self._t, "now": now}).mappings().all()
        return stored, [subscription_from(r) for r in moved]

    @storage_errors
    def fold_status_counts(self, limit: int) -> int:
        return fold(self._conn, self._t, limit)

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

    @storage_errors
    def search(
        self, text: str | None, statuses: frozenset[str] | None, limit: int = 100
    ) -> Sequence[Subscription]:
        return [sub for _, sub in self.search_page(text, statuses, None, limit)[0]]

    @storage_errors
    def search_page(
        self, text: str | None, statuses: frozenset[str] | None, before: int | None, limit: int
    ) -> tuple[Sequence[tuple[int, Subscription]], int | None]:
        limit = max(limit, 0)
        query = self._latest_matching(text, statuses, before)
        if not text:
            rows = self._rows(query.order_by(t.subscriptions.c.pk.desc()).limit(limit))
            return [(r["pk"], subscription_from(r)) for r in rows], None
        rows, stopped_at = self._text_page(query, text.lower(), before, limit)
        return [(r["pk"], subscription_from(r)) for r in rows], stopped_at

    def _latest_matching(
        self, text: str | None, statuses: frozenset[str] | None, before: int | None
    ) -> sa.Select[Any]:
        """Each owner's latest row below ``before`` that matches: the one with no newer
        row, a probe of the owner index per row read, newest first, until the page is full
        (grouping the tenant's rows by owner would read them all for one page)."""
        c = t.subscriptions.c
        newer = sa.alias(t.subscriptions, "ent_newer")
        superseded = sa.exists().where(
            newer.c.tenant == c.tenant,
            newer.c.owner_kind == c.owner_kind,
            newer.c.owner_id == c.owner_id,
            newer.c.pk > c.pk,
        )
        conditions: list[sa.ColumnElement[bool]] = [c.tenant == self._t, ~superseded]
        if before is not None:
            conditions.append(c.pk < before)
        if statuses is not None:
            conditions.append(c.status.in_(sorted(statuses)))
        if text:
            needle = text.lower()
            conditions.append(
                sa.or_(
                    *(
                        sa.func.lower(column).contains(needle, autoescape=True)
                        for column in (c.owner_id, c.external_id, c.plan_key)
                    )
                )
            )
        return sa.select(t.subscriptions).where(*conditions)

    def _text_page(
        self, query: sa.Select[Any], needle: str, before: int | None, limit: int
    ) -> tuple[Sequence[RowMapping], int | None]:
        """A needle found in few rows would read the whole tenant for one page: a page
        looks at the newest SEARCHED candidate rows below the cursor (those holding the
        needle's sparsest trigram; any row for a needle too short for one, or that a plan
        key holds) and says where it stopped."""
        lookup = needle_grams(needle)
        if lookup is not None and self._in_a_plan_key(needle):
            lookup = None
        if lookup is None:
            return self._in_windows(query, self._window, before, limit)
        gram, count = self._sparsest(lookup, before)
        if count == 0:
            return [], None
        if count < _WEIGHED:
            every = self._postings(gram)(before, SEARCHED)
            return self._rows(self._walk(query, every, limit)), None
        return self._in_windows(query, self._postings(gram), before, limit)

    def _in_windows(
        self, query: sa.Select[Any], window: _Window, before: int | None, limit: int
    ) -> tuple[Sequence[RowMapping], int | None]:
        """The rows of ``query`` among the newest SEARCHED candidates below ``before``,
        newest first, up to ``limit``, and where the look stopped (``None``: it saw every
        candidate). SQLite and MariaDB build a window whole before they walk it: a first
        window of a few candidates per row wanted fills a page whose candidates mostly
        match, whatever the tenant holds; the rest of the SEARCHED is read only when it
        does not."""
        rows: list[RowMapping] = []
        size = SEARCHED if self._walks_lazily() else min(SEARCHED, _FIRST_WINDOW * limit)
        seen = 0
        while True:
            candidates = window(before, size)
            rows += self._rows(self._walk(query, candidates, limit - len(rows)))
            if len(rows) >= limit:
                return rows, None
            floor, found = self._reach(candidates)
            seen += found
            if found < size:
                return rows, None
            if seen >= SEARCHED:
                return rows, floor
            before, size = floor, SEARCHED - seen

    def _in_a_plan_key(self, needle: str) -> bool:
        """Whether some plan's key holds ``needle`` (as the search compares): the plans
        are few, and the rows on such a plan are many."""
        p = t.plans.c
        found = self._conn.execute(
            sa.select(p.key).where(sa.func.lower(p.key).contains(needle, autoescape=True)).limit(1)
        ).first()
        return found is not None

    def _reach(self, window: sa.Subquery) -> tuple[int, int]:
        """The lowest pk of ``window`` and how many it holds."""
        floor, seen = self._conn.execute(
            sa.select(sa.func.min(window.c.pk), sa.func.count()).select_from(window)
        ).one()
        return (0 if floor is None else int(floor)), int(seen)

    def _walks_lazily(self) -> bool:
        """PostgreSQL reads a window's candidates only as far as the walk goes."""
        return self._conn.dialect.name == "postgresql"

    def _walk(self, query: sa.Select[Any], window: sa.Subquery, limit: int) -> sa.Select[Any]:
        """The rows of ``query`` among the postings of ``window``, newest first, read until
        the page is full. PostgreSQL takes the needle's ``LIKE`` for rare and would scan
        the rows first: a ``LATERAL`` probe per posting keeps it walking the postings
        (SQLite and MariaDB do so by themselves)."""
        c = t.subscriptions.c
        if not self._walks_lazily():
            walked = query.join(window, window.c.pk == c.pk)
            return walked.order_by(window.c.pk.desc()).limit(limit)
        row = query.where(c.pk == window.c.pk).lateral("ent_row")
        return (
            sa.select(row)
            .select_from(window.join(row, sa.true()))
            .order_by(window.c.pk.desc())
            .limit(limit)
        )

    def _sparsest(self, lookup: Sequence[str], before: int | None) -> tuple[str, int]:
        """The trigram of ``lookup`` with the fewest postings below ``before`` if one has
        fewer than `_WEIGHED` (and how many), else the one whose `_WEIGHED` newest
        postings reach furthest back (and `_WEIGHED`): a bounded read either way."""
        g = t.search_grams.c
        below = [] if before is None else [g.sub_pk < before]
        weighed = []
        for n, gram in enumerate(lookup):
            newest = (
                sa.select(g.sub_pk)
                .where(g.tenant == self._t, g.gram == gram, *below)
                .order_by(g.sub_pk.desc())
                .limit(_WEIGHED)
                .subquery()
            )
            weighed.append(
                sa.select(
                    sa.literal(n).label("n"),
                    sa.func.count().label("found"),
                    sa.func.min(newest.c.sub_pk).label("reach"),
                ).select_from(newest)
            )
        found = [
            (int(count), 0 if reach is None else int(reach), int(n))
            for n, count, reach in self._conn.execute(sa.union_all(*weighed))
        ]
        count, _, n = min(
            found, key=lambda w: (w[0] >= _WEIGHED, w[0] if w[0] < _WEIGHED else w[1])
        )
        return lookup[n], count

    def _postings(self, gram: str) -> _Window:
        """The windows of ``gram``'s postings, newest first."""
        g = t.search_grams.c

        def window(before: int | None, size: int) -> sa.Subquery:
            below = [] if before is None else [g.sub_pk < before]
            return (
                sa.select(g.sub_pk.label("pk"))
                .where(g.tenant == self._t, g.gram == gram, *below)
                .order_by(g.sub_pk.desc())
                .limit(size)
                .subquery("ent_window")
            )

        return window

    def _window(self, before: int | None, size: int) -> sa.Subquery:
        """The newest ``size`` rows of the tenant below ``before``."""
        c = t.subscriptions.c
        below = [] if before is None else [c.pk < before]
        return (
            sa.select(c.pk)
            .where(c.tenant == self._t, *below)
            .order_by(c.pk.desc())
            .limit(size)
            .subquery("ent_window")
        )
