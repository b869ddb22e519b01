"""What every SQL repository shares: driver-error translation (`storage_errors`, from
`entitlements.adapters.sql.errors`) and tenant scoping."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping

from entitlements.adapters.sql.errors import storage_errors
from entitlements.domain.owner import Owner, in_tenant

if TYPE_CHECKING:
    from entitlements.adapters.sql.store import SqlUnitOfWork

__all__ = ["Repository", "live_owner_key", "owner_of", "same_named", "storage_errors", "tenant_of"]


@cache
def _skipping_conflicts(table: sa.Table, dialect: str) -> sa.Executable | None:
    """An INSERT into ``table`` that skips a row a unique key refuses and answers the
    ``pk`` of a row it wrote, where the dialect has one."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing().returning(table.c.pk)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing().returning(table.c.pk)
    return None


def tenant_of(value: str | None) -> str:
    return value or ""


def owner_of(row: RowMapping | Mapping[str, Any]) -> Owner:
    return Owner(row["owner_kind"], row["owner_id"], row["tenant"] or None)


def same_named(row: RowMapping | Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The columns ``names`` of ``row`` as keyword arguments: most fields of a record are
    stored in a column of the same name, read back unchanged."""
    return {name: row[name] for name in names}


def owners_among(
    table: sa.Table, tenant: str, owners: Iterable[Owner]
) -> list[sa.ColumnElement[bool]]:
    """Conditions selecting the rows of ``table`` that are ``owners``' in ``tenant``, one
    per owner kind (usually one): its ids in a list, which every engine seeks in an index
    on (tenant, kind, id). SQLite seeks none with a list of (kind, id) pairs, nor with
    such conditions joined by OR: it would read every row of the tenant."""
    ids: dict[str, list[str]] = {}
    for owner in owners:
        ids.setdefault(owner.kind, []).append(owner.id)
    c = table.c
    return [
        sa.and_(c.tenant == tenant, c.owner_kind == kind, c.owner_id.in_(of_kind))
        for kind, of_kind in sorted(ids.items())
    ]


def live_owner_key(owner: Owner) -> str:
    return hashlib.sha256(
        f"{tenant_of(owner.tenant)}\x1f{owner.kind}\x1f{owner.id}".encode()
    ).hexdigest()


class Repository:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    @property
    def _conn(self) -> Connection:
        return self._uow.connection

    @property
    def _t(self) -> str:
        return tenant_of(self._uow.tenant)

    def _scope(self, owner: Owner) -> Owner:
        return in_tenant(owner, self._uow.tenant)

    def _owned(self, table: sa.Table, owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
        """The conditions selecting ``owner``'s rows of ``table`` in this tenant."""
        self._scope(owner)
        return (
            table.c.tenant == self._t,
            table.c.owner_kind == owner.kind,
            table.c.owner_id == owner.id,
        )

    def _owner_row(self, owner: Owner) -> dict[str, str]:
        """The columns naming ``owner`` in a row of this tenant; `owner_of` reads them."""
        self._scope(owner)
        return {"tenant": self._t, "owner_kind": owner.kind, "owner_id": owner.id}

    def _rows(self, statement: sa.Executable) -> Sequence[RowMapping]:
        return self._conn.execute(statement).mappings().all()

    def _by_id(self, table: sa.Table, row_id: str) -> RowMapping | None:
        """This tenant's row of ``table`` with that ``id`` (``None``: there is none; the
        caller says what is missing)."""
        c = table.c
        return (
            self._conn.execute(sa.select(table).where(c.tenant == self._t, c.id == row_id))
            .mappings()
            .first()
        )

    def _insert_new(self, statement: sa.Executable) -> bool:
        """Run the INSERT ``statement`` in a savepoint; ``False`` when a unique key says
        the row is there already (written concurrently, or a key reused), with nothing
        written and the transaction still usable."""
        try:
            with self._conn.begin_nested():
                self._conn.execute(statement)
        except exc.IntegrityError:
            return False
        return True

    def _found(self, table: sa.Table, row_id: str, missing: Callable[[], Exception]) -> RowMapping:
        """`_by_id` for a row that must be there: ``missing()`` is raised when it is not."""
        row = self._by_id(table, row_id)
        if row is None:
            raise missing()
        return row

    def _insert_unless_taken(self, table: sa.Table, row: Mapping[str, Any]) -> int | None:
        """Insert ``row`` into ``table`` and answer its ``pk``, unless one of its unique
        keys says the row is there already (written concurrently, or a key reused):
        ``None`` then, with nothing written and the transaction still usable, and without
        a savepoint."""
        skipping = _skipping_conflicts(table, self._conn.dialect.name)
        if skipping is not None:
            found = self._conn.execute(skipping, row).first()
            return None if found is None else int(found[0])
        try:  # InnoDB undoes the failed statement alone: no savepoint needed
            result = self._conn.execute(table.insert(), row)
        except exc.IntegrityError:
            return None
        inserted = result.inserted_primary_key
        return None if inserted is None else int(inserted[0])

    def _insert_all_unless_taken(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> int:
        """`_insert_unless_taken` for many rows in one statement: how many were written,
        all or none (a plain insert, a tenth of the cost of one answering its rows on
        PostgreSQL, in a savepoint where a refused row would end the transaction)."""
        mysql = self._conn.dialect.name == "mysql"  # InnoDB undoes the failed statement alone
        try:
            with nullcontext() if mysql else self._conn.begin_nested():
                self._conn.execute(table.insert(), list(rows))
        except exc.IntegrityError:
            return 0
        return len(rows)

    def _batch(
        self,
        table: sa.Table,
        where: Sequence[sa.ColumnElement[bool]],
        order_by: Sequence[sa.ColumnElement[Any]],
        limit: int,
    ) -> Sequence[RowMapping]:
        """The first ``limit`` of this tenant's rows of ``table`` that match ``where``, in
        ``order_by`` order: one batch of what the sweep works through."""
        return self._rows(
            sa.select(table)
            .where(table.c.tenant == self._t, *where)
            .order_by(*order_by)
            .limit(limit)
        )
