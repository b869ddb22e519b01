"""Usage counters, the usage ledger, reservations and seat assignments in SQL.

Counting is race-free without table locks: ``add`` is one conditional UPDATE
(``used + reserved + n <= ceiling``, the terms revision the caller resolved at, no held
reservation past its expiry), evaluated by the database against the latest row under
its row lock, so concurrent writers can never pass a hard limit together and a writer
holding stale terms is refused. Statements are built once per shape and reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import RowMapping

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, owner_of, same_named, storage_errors
from entitlements.domain.change import ChangeKind
from entitlements.domain.owner import Owner
from entitlements.domain.usage import (
    Consumption,
    Counter,
    CounterAddition,
    Reservation,
    ReservationStatus,
    SeatAssignment,
    UsageRecord,
)
from entitlements.errors import Conflict, NotFound

__all__ = ["SqlSeats", "SqlUsage"]


def _of_counter(c: Any) -> tuple[sa.ColumnElement[bool], ...]:
    """The rows of one counter (owner, metric, period) in a table that carries its key,
    from the ``p_*`` parameters `_params` binds."""
    return (
        c.tenant == sa.bindparam("p_tenant"),
        c.owner_kind == sa.bindparam("p_kind"),
        c.owner_id == sa.bindparam("p_id"),
        c.metric == sa.bindparam("p_metric"),
        c.period_start == sa.bindparam("p_period"),
    )


_c = t.usage_counters.c
_COUNTER = _of_counter(_c)
_READ_COUNTER = sa.select(_c.used, _c.reserved, _c.held_until).where(*_COUNTER)
_HELD = ReservationStatus.HELD.value
_r = t.reservations.c
_HELD_OF_COUNTER = (*_of_counter(_r), _r.status == _HELD)
_u = t.usage_records.c


@cache
def _add_statement(
    dialect: str,
    *,
    ceiling: bool,
    revision: bool,
    fresh: bool,
    fallback: bool,
    holds: bool,
    returning: bool = True,
) -> Any:
    """The conditional UPDATE of one counter, for one combination of conditions; without
    ``returning`` the caller only needs to know whether it matched (the batch knows the
    counter already, read under its row lock)."""
    conditions = [
        *_COUNTER,
        _c.used + sa.bindparam("p_used") >= 0,
        _c.reserved + sa.bindparam("p_reserved") >= 0,
    ]
    if ceiling:
        conditions.append(
            _c.used + _c.reserved + sa.bindparam("p_used") + sa.bindparam("p_reserved")
            <= sa.bindparam("p_ceiling")
        )
    if revision:
        conditions.append(_c.terms_revision == sa.bindparam("p_revision"))
    if fresh:
        conditions.append(sa.or_(_c.held_until.is_(None), _c.held_until > sa.bindparam("p_now")))
    if fallback:
        conditions.append(
            sa.exists().where(
                t.plans.c.key == sa.bindparam("p_fallback_key"),
                t.plans.c.latest_version == sa.bindparam("p_fallback_version"),
            )
        )
    values: dict[str, Any] = {}
    if holds:
        until = sa.bindparam("p_hold_until", type_=t.usage_counters.c.held_until.type)
        values["held_until"] = sa.case(
            (sa.or_(_c.held_until.is_(None), _c.held_until > until), until),
            else_=_c.held_until,
        )
    if not returning:
        values["used"] = _c.used + sa.bindparam("p_used")
        values["reserved"] = _c.reserved + sa.bindparam("p_reserved")
        return t.usage_counters.update().where(*conditions).values(**values)
    if dialect in ("mysql", "mariadb"):
        # no UPDATE ... RETURNING: the new values go to session variables, which the
        # ledger row's INSERT ... RETURNING (or a SELECT) hands back
        values["used"] = sa.text("(@ent_used := used + :p_used)")
        values["reserved"] = sa.text("(@ent_reserved := reserved + :p_reserved)")
        values.setdefault("held_until", sa.text("(@ent_held := held_until)"))
        return t.usage_counters.update().where(*conditions).values(**values)
    values["used"] = _c.used + sa.bindparam("p_used")
    values["reserved"] = _c.reserved + sa.bindparam("p_reserved")
    return (
        t.usage_counters.update()
        .where(*conditions)
        .values(**values)
        .returning(_c.used, _c.reserved, _c.held_until)
    )


def _count_statement(dialect: str, params: dict[str, Any], *, returning: bool = True) -> Any:
    """The conditional UPDATE whose conditions are those ``params`` carries."""
    return _add_statement(
        dialect,
        ceiling="p_ceiling" in params,
        revision="p_revision" in params,
        fresh="p_now" in params,
        fallback="p_fallback_key" in params,
        holds="p_hold_until" in params,
        returning=returning,
    )


_MYSQL_READ_BACK = sa.text("SELECT @ent_used, @ent_reserved, @ent_held")
_RECORD_KEYS = ["tenant", "owner_kind", "owner_id", "key"]
_RECORD_COLUMNS = (_u.id, _u.metric, _u.amount, _u.period_start, _u.at)
_UNCOUNT = t.usage_counters.update().where(*_COUNTER).values(used=_c.used - sa.bindparam("p_used"))
_RECORDED_COLUMNS = (_u.owner_kind, _u.owner_id, *_RECORD_COLUMNS, _u.key)
_RECORDED = sa.select(*_RECORDED_COLUMNS).where(
    _u.tenant == sa.bindparam("p_tenant"),
    _u.owner_kind == sa.bindparam("p_kind"),
    _u.owner_id == sa.bindparam("p_id"),
    _u.key.in_(sa.bindparam("p_keys", expanding=True)),
)
_OWNERS_ONE_BY_ONE = 3
_COUNTER_COLUMNS = (
    _c.owner_kind,
    _c.owner_id,
    _c.metric,
    _c.period_start,
    _c.used,
    _c.reserved,
    _c.held_until,
    _c.terms_revision,
)
_CHUNK = 1000  # rows looked up by one statement (SQLite binds at most 32,766 parameters)


def _sizes(count: int) -> int:
    """The number of rows a VALUES list is padded to: a few statement shapes to compile
    and cache instead of one for every batch size."""
    size = 16
    while size < count:
        size *= 2
    return size


@cache
def _lookup(dialect: str, table: sa.Table, names: tuple[str, ...], size: int, lock: bool) -> Any:
    """The rows of ``table`` in tenant ``p_tenant`` whose ``names`` columns equal one of
    the wanted tuples, found through the table's unique index one tuple at a time,
    whatever else the tenant stored (``lock``: locked, in key order). A row-value ``IN``
    list reads the same but is not: PostgreSQL turns it into an OR of ANDs and SQLite
    into a scan, both filtering every row of the tenant."""
    selected = _RECORDED_COLUMNS if table is t.usage_records else _COUNTER_COLUMNS
    tenant = table.c.tenant == sa.bindparam("p_tenant")
    if dialect == "postgresql":
        return _unnest_lookup(table, names, selected, tenant, lock)
    columns = [table.c[name] for name in names]
    if dialect in ("mysql", "mariadb"):
        # MariaDB walks the unique index for a row-value IN (a range read, one probe each)
        row = sa.types.TupleType(*(column.type for column in columns))
        wanted = sa.bindparam("p_wanted", expanding=True, type_=row)
        query = sa.select(*selected).where(tenant, sa.tuple_(*columns).in_(wanted))
    else:
        return _values_lookup(table, columns, selected, size, lock)
    if lock:
        query = query.order_by(*(table.c[n] for n in _COUNTER_KEY)).with_for_update()
    return query


def _values_lookup(
    table: sa.Table,
    columns: list[sa.Column[Any]],
    selected: tuple[Any, ...],
    size: int,
    lock: bool,
) -> Any:
    """SQLite: a join against a VALUES list of ``size`` rows, probing the unique index
    once per row of it. Written as text with typed parameters and result columns: a
    ``values()`` construct has no cache key, so SQLAlchemy would compile its thousands of
    parameters again on every call, which cost more than the lookup itself."""
    quote = sqlite.dialect().identifier_preparer.quote
    name = quote(table.name)
    wanted = ", ".join(quote(c.name) for c in columns)
    rows = ", ".join(
        "(" + ", ".join(f":p_{row}_{n}" for n in range(len(columns))) + ")" for row in range(size)
    )
    on = " AND ".join(
        [f"{name}.tenant = :p_tenant"]
        + [f"{name}.{quote(c.name)} = ent_wanted.{quote(c.name)}" for c in columns]
    )
    order = " ORDER BY " + ", ".join(f"{name}.{quote(n)}" for n in _COUNTER_KEY) if lock else ""
    text = sa.text(
        f"WITH ent_wanted({wanted}) AS (VALUES {rows}) "
        f"SELECT {', '.join(f'{name}.{quote(c.name)}' for c in selected)} "
        f"FROM ent_wanted JOIN {name} ON {on}{order}"
    ).bindparams(
        sa.bindparam("p_tenant", type_=table.c.tenant.type),
        *(
            sa.bindparam(f"p_{row}_{n}", type_=c.type)
            for row in range(size)
            for n, c in enumerate(columns)
        ),
    )
    return text.columns(*selected)


_COUNTER_KEY = ("owner_kind", "owner_id", "metric", "period_start")


def _unnest_lookup(
    table: sa.Table,
    names: tuple[str, ...],
    selected: tuple[Any, ...],
    tenant: sa.ColumnElement[bool],
    lock: bool,
) -> Any:
    """PostgreSQL: one array per column, unnested, and for each wanted tuple a LATERAL
    probe of the unique index. A plain join would be hashed against a scan of the table
    once the planner thinks the table small next to the list (a 50,000-row ledger next to
    1,000 keys); the LIMIT keeps the probe a probe. One statement for any number of tuples;
    locks are taken in the arrays' order, which the caller sorts. On a table PostgreSQL has
    never analyzed (a new one, until autovacuum's first pass) any index may look as good
    as the unique one; batches of a few owners take `SqlUsage._one_by_one` instead."""
    arrays = [
        sa.bindparam(f"p_{name}", type_=postgresql.ARRAY(table.c[name].type)) for name in names
    ]
    wanted = sa.func.unnest(*arrays).table_valued(*names).render_derived("ent_wanted")
    probe = sa.select(*selected).where(tenant, *(table.c[n] == wanted.c[n] for n in names)).limit(1)
    found = (probe.with_for_update() if lock else probe).lateral("ent_found")
    return sa.select(*found.c).select_from(wanted.join(found, sa.true()))


def _lookup_params(
    dialect: str, names: tuple[str, ...], wanted: Sequence[tuple[Any, ...]], size: int
) -> dict[str, Any]:
    if dialect in ("mysql", "mariadb"):
        return {"p_wanted": list(wanted)}
    if dialect == "postgresql":
        columns = zip(*wanted, strict=True)
        return {f"p_{name}": list(values) for name, values in zip(names, columns, strict=True)}
    padded = [*wanted, *([wanted[-1]] * (size - len(wanted)))]  # a repeat matches nothing new
    return {f"p_{row}_{n}": value for row, key in enumerate(padded) for n, value in enumerate(key)}


_DELETE_RECORD = t.usage_records.delete().where(_u.id == sa.bindparam("p_record"))


@cache
def _record_statement(dialect: str, *, read_back: bool = False) -> Any:
    """INSERT of a ledger row that, when the owner already recorded the key, stores
    nothing and returns the stored row instead: one statement tells a retry from a first
    request. On MariaDB it also hands back the session variables the counter's UPDATE
    just set (``read_back``), saving the SELECT that would read them."""
    if dialect == "postgresql" or dialect == "sqlite":
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(t.usage_records)
        return insert.on_conflict_do_update(
            index_elements=_RECORD_KEYS, set_={"key": insert.excluded.key}
        ).returning(*_RECORD_COLUMNS)
    columns: list[Any] = list(_RECORD_COLUMNS)
    if read_back:
        columns.extend(
            sa.literal_column(name) for name in ("@ent_used", "@ent_reserved", "@ent_held")
        )
    return mysql.insert(t.usage_records).on_duplicate_key_update(key=_u.key).returning(*columns)


def _upsert_counter(dialect: str) -> Any:
    values = {
        "tenant": sa.bindparam("p_tenant"),
        "owner_kind": sa.bindparam("p_kind"),
        "owner_id": sa.bindparam("p_id"),
        "metric": sa.bindparam("p_metric"),
        "period_start": sa.bindparam("p_period"),
        "used": 0,
        "reserved": 0,
        "terms_revision": sa.bindparam("p_revision"),
    }
    keys = ["tenant", "owner_kind", "owner_id", "metric", "period_start"]
    stamp: dict[str, Any] = {"terms_revision": sa.bindparam("p_revision")}
    if dialect == "postgresql":
        return (
            postgresql.insert(t.usage_counters)
            .values(**values)
            .on_conflict_do_update(index_elements=keys, set_=stamp)
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(t.usage_counters)
            .values(**values)
            .on_conflict_do_update(index_elements=keys, set_=stamp)
        )
    return mysql.insert(t.usage_counters).values(**values).on_duplicate_key_update(**stamp)


def _record_from(row: RowMapping) -> UsageRecord:
    fields = same_named(row, "id", "metric", "amount", "period_start", "at", "key")
    return UsageRecord(owner=owner_of(row), **fields)


def _reservation_from(row: RowMapping) -> Reservation:
    fields = same_named(row, "id", "metric", "amount", "period_start", "committed", "key")
    times = same_named(row, "created_at", "expires_at", "settled_at")
    status = ReservationStatus(row["status"])
    return Reservation(owner=owner_of(row), status=status, **fields, **times)


class SqlUsage(Repository):
    def _owner(self, table: sa.Table, owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
        return self._owned(table, owner)

    def _params(self, owner: Owner, metric: str, period_start: datetime) -> dict[str, Any]:
        self._scope(owner)
        return {
            "p_tenant": self._t,
            "p_kind": owner.kind,
            "p_id": owner.id,
            "p_metric": metric,
            "p_period": period_start,
        }

    @storage_errors
    def counter(self, owner: Owner, metric: str, period_start: datetime) -> Counter:
        row = self._conn.execute(_READ_COUNTER, self._params(owner, metric, period_start)).first()
        if row is None:
            return Counter(owner, metric, period_start)
        return Counter(owner, metric, period_start, row[0], row[1], row[2])

    @storage_errors
    def counters(self, owner: Owner, metric: str) -> Sequence[Counter]:
        rows = self._rows(
            sa.select(t.usage_counters).where(
                *self._owner(t.usage_counters, owner), _c.metric == metric
            )
        )
        found = [
            Counter(owner, metric, r["period_start"], r["used"], r["reserved"], r["held_until"])
            for r in rows
        ]
        return sorted(found, key=lambda c: c.period_start)

    @storage_errors
    def counters_page(
        self, owner: Owner, metric: str, after: datetime | None, limit: int
    ) -> Sequence[Counter]:
        past = [] if after is None else [_c.period_start > after]
        rows = self._rows(
            sa.select(t.usage_counters)
            .where(*self._owner(t.usage_counters, owner), _c.metric == metric, *past)
            .order_by(_c.period_start)
            .limit(limit)
        )
        return [
            Counter(owner, metric, r["period_start"], r["used"], r["reserved"], r["held_until"])
            for r in rows
        ]

    @storage_errors
    def ensure(self, owner: Owner, metric: str, period_start: datetime, revision: int) -> None:
        self._conn.execute(
            _upsert_counter(self._conn.dialect.name),
            {**self._params(owner, metric, period_start), "p_revision": revision},
        )

    @storage_errors
    def add(self, addition: CounterAddition) -> Counter | None:
        owner, metric, period_start = addition.owner, addition.metric, addition.period_start
        params = self._count_params(addition, addition.used, addition.reserved)
        if addition.hold_until is not None:
            params["p_hold_until"] = addition.hold_until
        statement = _count_statement(self._conn.dialect.name, params)
        counter = self._apply(statement, params, owner, metric, period_start)
        if counter is None and addition.revision is None and self._missing(params):
            # under the terms lock, as every counter is created: a terms write that creates
            # the owner's revision row relies on there being no counter yet
            self.ensure(owner, metric, period_start, self._uow.revisions.lock(owner))
            counter = self._apply(statement, params, owner, metric, period_start)
        if counter is not None:
            self._uow.feed.note(owner, ChangeKind.USAGE)
        return counter

    def _count_params(
        self, counted: CounterAddition | Consumption, used: int, reserved: int
    ) -> dict[str, Any]:
        """The parameters of a conditional count of ``used`` and ``reserved`` into
        ``counted``'s counter: a condition's parameters are present only where it applies
        (`_count_statement` picks the statement by them); an addition's ceiling and
        ``now`` only where its total grows."""
        if isinstance(counted, Consumption):
            r = counted.record
            params = self._params(r.owner, r.metric, r.period_start)
            grows = True
        else:
            params = self._params(counted.owner, counted.metric, counted.period_start)
            grows = used + reserved > 0
        params.update(p_used=used, p_reserved=reserved)
        if grows and counted.ceiling is not None:
            params["p_ceiling"] = counted.ceiling
        if counted.revision is not None:
            params["p_revision"] = counted.revision
        if grows and counted.now is not None:
            params["p_now"] = counted.now
        if counted.fallback is not None:
            params["p_fallback_key"], params["p_fallback_version"] = counted.fallback
        return params

    def _apply(
        self,
        statement: Any,
        params: dict[str, Any],
        owner: Owner,
        metric: str,
        period_start: datetime,
    ) -> Counter | None:
        result = self._conn.execute(statement, params)
        if self._conn.dialect.name in ("mysql", "mariadb"):
            if result.rowcount != 1:
                return None
            used, reserved, held = self._conn.execute(_MYSQL_READ_BACK).one()
            if "p_hold_until" in params:  # rare: only a reservation moves it
                held = self.counter(owner, metric, period_start).held_until
            elif held is not None:
                held = datetime.fromisoformat(str(held)).replace(tzinfo=UTC)
            return Counter(owner, metric, period_start, int(used), int(reserved), held)
        row = result.first()
        if row is None:
            return None
        return Counter(owner, metric, period_start, row[0], row[1], row[2])

    def _missing(self, params: dict[str, Any]) -> bool:
        return self._conn.execute(_READ_COUNTER, params).first() is None

    @storage_errors
    def set_used(
        self,
        owner: Owner,
        metric: str,
        period_start: datetime,
        used: int,
        *,
        revision: int | None = None,
    ) -> Counter | None:
        params = self._params(owner, metric, period_start)
        if revision is None:
            self.ensure(owner, metric, period_start, self._uow.revisions.lock(owner))
        conditions = [*_COUNTER]
        if revision is not None:
            conditions.append(_c.terms_revision == sa.bindparam("p_revision"))
            params["p_revision"] = revision
        result = self._conn.execute(
            t.usage_counters.update().where(*conditions).values(used=used), params
        )
        if result.rowcount != 1:
            return None
        self._uow.feed.note(owner, ChangeKind.USAGE)
        return self.counter(owner, metric, period_start)

    def _record_row(self, record: UsageRecord) -> dict[str, Any]:
        owner = record.owner
        return {
            "id": record.id,
            "tenant": self._t,
            "owner_kind": owner.kind,
            "owner_id": owner.id,
            "metric": record.metric,
            "amount": record.amount,
            "period_start": record.period_start,
            "at": record.at,
            "key": record.key,
        }

    def _stored(self, row: Any, given: UsageRecord) -> UsageRecord | None:
        """``None`` if ``row`` is the one just inserted, else the record stored earlier
        under the same key."""
        if row[0] == given.id:
            return None
        return UsageRecord(row[0], given.owner, row[1], row[2], row[3], row[4], given.key)

    @storage_errors
    def add_record(self, record: UsageRecord) -> UsageRecord | None:
        self._scope(record.owner)
        row = self._conn.execute(
            _record_statement(self._conn.dialect.name), self._record_row(record)
        ).one()
        return self._stored(row, record)

    @storage_errors
    def consume(self, consumption: Consumption) -> tuple[Counter | None, UsageRecord | None]:
        """Record and count in two statements. PostgreSQL and SQLite insert the ledger
        row first (a retry is told by the insert's result, and nothing is counted);
        MariaDB, lacking UPDATE ... RETURNING, counts first and reads the new counter
        back through the ledger row's INSERT ... RETURNING, taking the count back in
        the rare case the key was recorded already."""
        record = consumption.record
        owner, metric, period = record.owner, record.metric, record.period_start
        params = self._count_params(consumption, record.amount, 0)
        conn = self._conn
        dialect = conn.dialect.name
        update = _count_statement(dialect, params)
        values = self._record_row(record)
        if dialect in ("mysql", "mariadb"):
            if conn.execute(update, params).rowcount != 1:
                return None, None
            row = conn.execute(_record_statement(dialect, read_back=True), values).one()
            used, reserved, held = int(row[5]), int(row[6]), row[7]
            earlier = self._stored(row, record)
            if earlier is not None:
                conn.execute(_UNCOUNT, params)
                used -= record.amount
            if held is not None:
                held = datetime.fromisoformat(str(held)).replace(tzinfo=UTC)
            counter = Counter(owner, metric, period, used, reserved, held)
            if earlier is None:
                self._uow.feed.note(owner, ChangeKind.USAGE)
            return counter, earlier
        earlier = self._stored(conn.execute(_record_statement(dialect), values).one(), record)
        if earlier is not None:
            return None, earlier
        counted = conn.execute(update, params).first()
        if counted is None:
            conn.execute(_DELETE_RECORD, {"p_record": record.id})
            return None, None
        self._uow.feed.note(owner, ChangeKind.USAGE)
        return Counter(owner, metric, period, counted[0], counted[1], counted[2]), None

    # -- batches ---------------------------------------------------------------------

    def _look_up(
        self, table: sa.Table, names: tuple[str, ...], wanted: Sequence[tuple[Any, ...]], lock: bool
    ) -> list[Any]:
        """The rows of ``table`` whose ``names`` match ``wanted`` (see `_lookup`), in
        statements of at most `_CHUNK` tuples; locked ones in key order."""
        dialect = self._conn.dialect.name
        found: list[Any] = []
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            size = _sizes(len(chunk))
            statement = _lookup(dialect, table, names, size, lock)
            params = _lookup_params(dialect, names, chunk, size)
            params["p_tenant"] = self._t
            found.extend(self._conn.execute(statement, params))
        return found

    def _one_by_one(self, wanted: Sequence[tuple[str, str, str]]) -> list[Any]:
        """A few owners' keys: one statement per owner, its keys in an IN list (an index
        on the owner's columns serves it even on a table the planner has no statistics
        for, as a fresh PostgreSQL table)."""
        by_owner: dict[tuple[str, str], list[str]] = {}
        for kind, owner_id, key in wanted:
            by_owner.setdefault((kind, owner_id), []).append(key)
        found: list[Any] = []
        for (kind, owner_id), owned in by_owner.items():
            params = {"p_tenant": self._t, "p_kind": kind, "p_id": owner_id, "p_keys": owned}
            found.extend(self._conn.execute(_RECORDED, params))
        return found

    @storage_errors
    def recorded(self, keys: Sequence[tuple[Owner, str]]) -> dict[tuple[Owner, str], UsageRecord]:
        found: dict[tuple[Owner, str], UsageRecord] = {}
        if not keys:
            return found
        for owner, _ in keys:
            self._scope(owner)
        owners = {(o.kind, o.id): o for o, _ in keys}
        wanted = sorted({(o.kind, o.id, k) for o, k in keys})
        if len(owners) <= _OWNERS_ONE_BY_ONE:
            rows = self._one_by_one(wanted)
        else:
            rows = self._look_up(t.usage_records, ("owner_kind", "owner_id", "key"), wanted, False)
        for kind, owner_id, rid, metric, amount, period, at, key in rows:
            owner = owners[(kind, owner_id)]
            found[(owner, key)] = UsageRecord(rid, owner, metric, amount, period, at, key)
        return found

    @storage_errors
    def counters_of(
        self, keys: Sequence[tuple[Owner, str, datetime]], *, lock: bool = False
    ) -> dict[tuple[Owner, str, datetime], tuple[Counter, int]]:
        found: dict[tuple[Owner, str, datetime], tuple[Counter, int]] = {}
        if not keys:
            return found
        for owner, _, _ in keys:
            self._scope(owner)
        owners = {(o.kind, o.id): o for o, _, _ in keys}
        wanted = sorted({(o.kind, o.id, m, p) for o, m, p in keys})
        names = ("owner_kind", "owner_id", "metric", "period_start")
        rows = self._look_up(t.usage_counters, names, wanted, lock)
        for kind, owner_id, metric, period, used, reserved, held, revision in rows:
            owner = owners[(kind, owner_id)]
            period = period if period.tzinfo else period.replace(tzinfo=UTC)
            found[(owner, metric, period)] = (
                Counter(owner, metric, period, used, reserved, held),
                int(revision),
            )
        return found

    @storage_errors
    def add_records(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        for record in records:
            self._scope(record.owner)
        try:
            self._conn.execute(t.usage_records.insert(), [self._record_row(r) for r in records])
        except exc.IntegrityError as error:
            raise Conflict(
                "usage with one of these keys was recorded concurrently; retry the batch to "
                "get each event's result"
            ) from error

    @storage_errors
    def add_counted_many(self, additions: Sequence[CounterAddition]) -> bool:
        dialect = self._conn.dialect.name
        shapes: dict[Any, list[dict[str, Any]]] = {}
        for a in additions:
            self._scope(a.owner)
            params = self._count_params(a, a.used, 0)
            shapes.setdefault(_count_statement(dialect, params, returning=False), []).append(params)
        # each UPDATE matches at most its own counter: all matched when the counts add up
        matched = sum(self._conn.execute(update, rows).rowcount for update, rows in shapes.items())
        if matched != len(additions):
            return False
        for a in additions:
            self._uow.feed.note(a.owner, ChangeKind.USAGE)
        return True

    @storage_errors
    def remove_record(self, owner: Owner, record_id: str) -> None:
        self._conn.execute(
            t.usage_records.delete().where(*self._owner(t.usage_records, owner), _u.id == record_id)
        )

    @storage_errors
    def forget_keys(self, before: datetime, limit: int = 10_000) -> int:
        # the rows are picked first: MariaDB cannot UPDATE a table it selects from
        old = (
            self._conn.execute(
                sa.select(_u.pk)
                .where(_u.tenant == self._t, _u.at < before, _u.key.is_not(None))
                .order_by(_u.at)
                .limit(limit)
            )
            .scalars()
            .all()
        )
        if old:
            self._conn.execute(t.usage_records.update().where(_u.pk.in_(old)).values(key=None))
        settled = (
            self._conn.execute(
                sa.select(_r.id)
                .where(
                    _r.tenant == self._t,
                    _r.status != _HELD,
                    _r.settled_at < before,
                    _r.key.is_not(None),
                )
                .limit(limit - len(old))
            )
            .scalars()
            .all()
        )
        if settled:
            self._conn.execute(t.reservations.update().where(_r.id.in_(settled)).values(key=None))
        return len(old) + len(settled)

    @storage_errors
    def records(self, owner: Owner, metric: str, period_start: datetime) -> Sequence[UsageRecord]:
        rows = self._rows(
            sa.select(t.usage_records)
            .where(
                *self._owner(t.usage_records, owner),
                _u.metric == metric,
                _u.period_start == period_start,
            )
            .order_by(_u.pk)
        )
        return [_record_from(row) for row in rows]

    @storage_errors
    def add_reservation(self, reservation: Reservation) -> Reservation | None:
        owner = self._scope(reservation.owner)
        row = self._reservation_row(reservation)
        dialect = self._conn.dialect.name
        if reservation.key is None:
            self._conn.execute(t.reservations.insert(), row)
            return None
        if dialect in ("postgresql", "sqlite"):
            insert = (postgresql if dialect == "postgresql" else sqlite).insert(t.reservations)
            inserted = (
                self._conn.execute(
                    insert.on_conflict_do_nothing(
                        index_elements=["tenant", "owner_kind", "owner_id", "key"]
                    ).returning(_r.id),
                    row,
                ).first()
                is not None
            )
        else:
            try:
                self._conn.execute(t.reservations.insert(), row)
                inserted = True
            except exc.IntegrityError:
                inserted = False
        if inserted:
            return None
        rows = self._rows(
            sa.select(t.reservations).where(
                *self._owner(t.reservations, owner), _r.key == reservation.key
            )
        )
        if not rows:
            raise Conflict(f"reservation {reservation.key!r} of {owner} is being made concurrently")
        return _reservation_from(rows[0])

    def _reservation_row(self, r: Reservation) -> dict[str, Any]:
        return {
            "id": r.id,
            "tenant": self._t,
            "owner_kind": r.owner.kind,
            "owner_id": r.owner.id,
            "metric": r.metric,
            "amount": r.amount,
            "period_start": r.period_start,
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "status": r.status.value,
            "committed": r.committed,
            "key": r.key,
            "settled_at": r.settled_at,
        }

    @storage_errors
    def reservation(self, owner: Owner, reservation_id: str) -> Reservation:
        rows = self._rows(
            sa.select(t.reservations).where(
                *self._owner(t.reservations, owner), _r.id == reservation_id
            )
        )
        if not rows:
            raise NotFound(f"reservation {reservation_id} of {owner} does not exist")
        return _reservation_from(rows[0])

    @storage_errors
    def settle_reservation(self, reservation: Reservation) -> bool:
        result = self._conn.execute(
            t.reservations.update()
            .where(
                *self._owner(t.reservations, reservation.owner),
                _r.id == reservation.id,
                _r.status == _HELD,
            )
            .values(
                status=reservation.status.value,
                committed=reservation.committed,
                settled_at=reservation.settled_at,
            )
        )
        return result.rowcount == 1

    @storage_errors
    def refresh_held_until(self, owner: Owner, metric: str, period_start: datetime) -> None:
        earliest = sa.select(sa.func.min(_r.expires_at)).where(*_HELD_OF_COUNTER).scalar_subquery()
        self._conn.execute(
            t.usage_counters.update().where(*_COUNTER).values(held_until=earliest),
            self._params(owner, metric, period_start),
        )

    @storage_errors
    def expired_held(
        self, owner: Owner, metric: str, period_start: datetime, now: datetime
    ) -> Sequence[Reservation]:
        rows = self._conn.execute(
            sa.select(t.reservations)
            .where(*_HELD_OF_COUNTER, _r.expires_at <= now)
            .order_by(_r.expires_at, _r.id),
            self._params(owner, metric, period_start),
        ).mappings()
        return [_reservation_from(row) for row in rows]

    @storage_errors
    def held_reservations_due(self, now: datetime, limit: int = 500) -> Sequence[Reservation]:
        rows = self._rows(
            sa.select(t.reservations)
            .where(_r.tenant == self._t, _r.status == _HELD, _r.expires_at <= now)
            .order_by(_r.expires_at, _r.id)
            .limit(limit)
        )
        return sorted((_reservation_from(row) for row in rows), key=lambda x: (x.expires_at, x.id))


_SEAT_SAME = ("pool", "member", "assigned_at")
"""The seat's fields stored unchanged in the column of the same name."""


class SqlSeats(Repository):
    def _where(self, owner: Owner, pool: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (*self._owned(t.seat_assignments, owner), t.seat_assignments.c.pool == pool)

    @storage_errors
    def assigned(self, owner: Owner, pool: str) -> Sequence[SeatAssignment]:
        rows = self._rows(sa.select(t.seat_assignments).where(*self._where(owner, pool)))
        found = [SeatAssignment(owner, r["member"], r["assigned_at"], pool) for r in rows]
        return sorted(found, key=lambda a: a.member)

    @storage_errors
    def add(self, assignment: SeatAssignment) -> None:
        inserted = self._insert_new(
            t.seat_assignments.insert().values(
                **self._owner_row(assignment.owner),
                **{name: getattr(assignment, name) for name in _SEAT_SAME},
            )
        )
        if not inserted:
            raise Conflict(
                f"{assignment.member} already holds a {assignment.pool} seat of {assignment.owner}"
            )

    @storage_errors
    def remove(self, owner: Owner, pool: str, member: str) -> SeatAssignment:
        rows = self._rows(
            sa.select(t.seat_assignments).where(
                *self._where(owner, pool), t.seat_assignments.c.member == member
            )
        )
        if not rows:
            raise NotFound(f"{member} holds no {pool} seat of {owner}")
        self._conn.execute(
            t.seat_assignments.delete().where(
                *self._where(owner, pool), t.seat_assignments.c.member == member
            )
        )
        return SeatAssignment(owner, member, rows[0]["assigned_at"], pool)
