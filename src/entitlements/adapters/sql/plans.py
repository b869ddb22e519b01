"""The plan catalog in SQL: one row per plan, one per version of its terms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import Any

import attrs
import sqlalchemy as sa

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, storage_errors
from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.change import ChangeKind
from entitlements.domain.charges import charges_document, charges_from
from entitlements.domain.plan import ByContract, Feature, Limit, Plan, Price
from entitlements.errors import InvalidInput, PlanExists, StaleWrite, UnknownPlan

__all__ = [
    "PLAN_COLUMNS",
    "PLAN_JOIN",
    "SqlPlans",
    "features_document",
    "features_from",
    "plan_versions_wanted",
]


def _limit_document(limit: Limit) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "value": limit.value,
        "unit": limit.unit,
        "kind": limit.kind.value,
        "enforcement": limit.enforcement.value,
        "combine": limit.combine.value,
    }
    if limit.alerts:  # written only when set: documents of limits without stay as they were
        doc["alerts"] = list(limit.alerts)
    return doc


def _limits_document(plan: Plan) -> dict[str, Any]:
    return {name: _limit_document(limit) for name, limit in plan.limits.items()}


def features_document(features: Any) -> dict[str, Any]:
    return {
        key: {"enabled": f.enabled, "actions": None if f.actions is None else sorted(f.actions)}
        for key, f in features.items()
    }


def features_from(document: Any) -> dict[str, Feature]:
    return {key: Feature(d["enabled"], d["actions"]) for key, d in document.items()}


def _price_from(row: Mapping[Any, Any]) -> Price | ByContract | None:
    """A list price has an amount; a plan priced by contract has a billing cycle and no
    amount; a free plan has neither."""
    if row["cycle_unit"] is None:
        return None
    cycle = BillingCycle(row["cycle_unit"], row["cycle_every"])
    if row["price_amount"] is None:
        return ByContract(cycle)
    return Price(money(row["price_amount"]), row["price_currency"], cycle)


def _plan_from(row: Mapping[Any, Any]) -> Plan:
    return Plan(
        key=row["key"],
        name=row["name"],
        limits={name: Limit(**d) for name, d in row["limits"].items()},
        features=features_from(row["features"]),
        price=_price_from(row),
        trial_days=row["trial_days"],
        status=row["status"],
        owner_kinds=frozenset(row["owner_kinds"]),
        version=row["version"],
        revision=row["revision"],
        **_billing_from(row["billing"]),
    )


def _billing_from(document: Any) -> dict[str, Any]:
    if not document:
        return {}
    return {
        "charges": charges_from(document.get("charges")),
        "net_days": document.get("net_days"),
    }


def _billing_document(plan: Plan) -> dict[str, Any] | None:
    if not plan.charges and plan.net_days is None:
        return None
    return {"charges": charges_document(plan.charges), "net_days": plan.net_days}


def money(value: Any) -> Decimal:
    """Numeric columns pad amounts to their scale (49.900000): drop the padding but keep
    two decimals (49.90), as money is usually written."""
    amount = Decimal(value)
    trimmed = amount.normalize()
    exponent = trimmed.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        return amount.quantize(Decimal("0.01"))
    return trimmed


def _price_columns(price: Price | ByContract | None) -> dict[str, Any]:
    listed = price if isinstance(price, Price) else None
    return {
        "price_amount": None if listed is None else listed.amount,
        "price_currency": None if listed is None else listed.currency,
        "cycle_unit": None if price is None else price.cycle.unit.value,
        "cycle_every": None if price is None else price.cycle.every,
    }


def _version_row(plan: Plan) -> dict[str, Any]:
    return {
        "plan_key": plan.key,
        "version": plan.version,
        "limits": _limits_document(plan),
        "features": features_document(plan.features),
        **_price_columns(plan.price),
        "trial_days": plan.trial_days,
        "billing": _billing_document(plan),
    }


PLAN_COLUMNS = (
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
    t.plan_versions.c.billing,
)
PLAN_JOIN = t.plans.join(t.plan_versions, t.plan_versions.c.plan_key == t.plans.c.key)

# the statements of a cold resolution, built once (building a statement costs as much as
# running it on SQLite)
_LATEST_PLAN = (
    sa.select(*PLAN_COLUMNS)
    .select_from(PLAN_JOIN)
    .where(
        t.plans.c.key == sa.bindparam("key"), t.plan_versions.c.version == t.plans.c.latest_version
    )
)
_PLAN_VERSION = (
    sa.select(*PLAN_COLUMNS)
    .select_from(PLAN_JOIN)
    .where(
        t.plans.c.key == sa.bindparam("key"), t.plan_versions.c.version == sa.bindparam("version")
    )
)


def plan_versions_wanted(latest: tuple[bool, ...], prefix: str = "") -> sa.ColumnElement[bool]:
    """Rows of `PLAN_JOIN` that are one of several plan versions, each the latest or a
    given one (bound as ``{prefix}key{i}`` and ``{prefix}version{i}``); none of them
    when ``latest`` is empty (``false()`` first: an ``or_()`` of nothing is deprecated)."""
    p, v = t.plans.c, t.plan_versions.c
    return sa.or_(
        sa.false(),
        *(
            sa.and_(
                p.key == sa.bindparam(f"{prefix}key{i}"),
                v.version
                == (p.latest_version if is_latest else sa.bindparam(f"{prefix}version{i}")),
            )
            for i, is_latest in enumerate(latest)
        ),
    )


def plan_versions_bound(
    wanted: Sequence[tuple[str, int | None]], prefix: str = ""
) -> tuple[dict[str, Any], tuple[bool, ...]]:
    """The parameters `plan_versions_wanted` binds for ``wanted`` (``(key, None)``: the
    latest version), and the ``latest`` flags that build its statement."""
    params: dict[str, Any] = {}
    for i, (key, version) in enumerate(wanted):
        params[f"{prefix}key{i}"] = key
        if version is not None:
            params[f"{prefix}version{i}"] = version
    return params, tuple(version is None for _, version in wanted)


@cache
def _plans_of(latest: tuple[bool, ...]) -> sa.Select[Any]:
    """One SELECT of several plan versions, each the latest or a given one."""
    return (
        sa.select(*PLAN_COLUMNS, t.plans.c.latest_version)
        .select_from(PLAN_JOIN)
        .where(plan_versions_wanted(latest))
    )


class SqlPlans(Repository):
    def __init__(self, uow: Any) -> None:
        super().__init__(uow)
        self._preloaded: dict[tuple[str, int | None], Plan] = {}
        self._priced: bool | None = None

    def preload(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Plan versions read along with something else (each row with ``latest_version``):
        `get` and `get_many` answer from them — and from what `get` read before — until
        this unit of work writes a plan (a unit of work acting on many owners, such as a
        sweep's group, reads each plan once)."""
        for row in rows:
            plan = _plan_from(row)
            self._preloaded[(plan.key, plan.version)] = plan
            if plan.version == row["latest_version"]:
                self._preloaded[(plan.key, None)] = plan

    def keep(self, plans: Sequence[Plan]) -> None:
        """Plan versions read already: `get` and `get_many` answer from them until this
        unit of work writes a plan (a version never changes)."""
        for plan in plans:
            self._preloaded[(plan.key, plan.version)] = plan

    def _select(self) -> sa.Select[Any]:
        return sa.select(*PLAN_COLUMNS).select_from(PLAN_JOIN)

    @storage_errors
    def get(self, key: str, version: int | None = None) -> Plan:
        known = self._preloaded.get((key, version))
        if known is not None:
            return known
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
        plan = self._preloaded[(key, version)] = _plan_from(rows[0])
        return plan

    @storage_errors
    def get_many(self, wanted: Sequence[tuple[str, int | None]]) -> list[Plan]:
        if all(w in self._preloaded for w in wanted):
            return [self._preloaded[w] for w in wanted]
        if len(wanted) < 2:
            return [self.get(key, version) for key, version in wanted]
        params, flags = plan_versions_bound(wanted)
        rows = self._conn.execute(_plans_of(flags), params).mappings().all()
        found = {(r["key"], r["version"]): r for r in rows}
        latest = {r["key"]: r for r in rows if r["version"] == r["latest_version"]}
        plans = []
        for key, version in wanted:
            row = latest.get(key) if version is None else found.get((key, version))
            plans.append(self.get(key, version) if row is None else _plan_from(row))
        return plans

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
    def any_priced(self) -> bool:
        if self._priced is None:
            v = t.plan_versions.c
            # the catalog's few rows, judged here: a JSON column stores None as JSON null
            rows = self._conn.execute(sa.select(v.price_amount, v.billing))
            self._priced = any(price is not None or billing for price, billing in rows)
        return self._priced

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
        self._preloaded.clear()
        self._priced = None
        if self._conn.execute(sa.select(t.plans.c.key).where(t.plans.c.key == plan.key)).first():
            raise PlanExists(plan.key)
        stored = attrs.evolve(plan, version=1, revision=1)
        self._uow.feed.note(None, ChangeKind.CATALOG)
        written = self._insert_new(
            t.plans.insert().values(
                key=stored.key,
                name=stored.name,
                status=stored.status.value,
                owner_kinds=sorted(stored.owner_kinds),
                latest_version=1,
                revision=1,
            )
        )
        if not written:
            raise PlanExists(plan.key)
        self._conn.execute(t.plan_versions.insert().values(**_version_row(stored)))
        return stored

    @storage_errors
    def update(self, plan: Plan) -> Plan:
        self._preloaded.clear()
        self._priced = None
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
        self._uow.feed.note(None, ChangeKind.CATALOG)
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
