"""What every SQL repository shares: driver-error translation and tenant scoping."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection, RowMapping

from entitlements.domain.owner import Owner
from entitlements.errors import Busy, Conflict, EntitlementsError, InvalidInput, StorageError

if TYPE_CHECKING:
    from entitlements.adapters.sql.store import SqlUnitOfWork

__all__ = ["Repository", "live_owner_key", "owner_of", "storage_errors", "tenant_of"]

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
        except exc.DBAPIError as error:
            if is_retryable(error):
                raise Busy(
                    f"the database asked to retry (deadlock or serialization failure): {error.orig}"
                ) from error
            raise StorageError(f"storage failed: {type(error).__name__}: {error}") from error
        except exc.SQLAlchemyError as error:
            raise StorageError(f"storage failed: {type(error).__name__}: {error}") from error

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock (PostgreSQL)
RETRYABLE_MYSQL_CODES = {1205, 1213}  # lock wait timeout, deadlock (MariaDB/MySQL)


def is_retryable(error: exc.DBAPIError) -> bool:
    orig = error.orig
    if getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] in RETRYABLE_MYSQL_CODES


def tenant_of(value: str | None) -> str:
    return value or ""


def owner_of(row: RowMapping) -> Owner:
    return Owner(row["owner_kind"], row["owner_id"], row["tenant"] or None)


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
        if owner.tenant != self._uow.tenant:
            raise InvalidInput(
                "owner.tenant",
                f"{owner} belongs to tenant {owner.tenant!r}, not to this unit of work's tenant {self._uow.tenant!r}",
            )
        return owner

    def _owned(self, table: sa.Table, owner: Owner) -> tuple[sa.ColumnElement[bool], ...]:
        """The conditions selecting ``owner``'s rows of ``table`` in this tenant."""
        self._scope(owner)
        return (
            table.c.tenant == self._t,
            table.c.owner_kind == owner.kind,
            table.c.owner_id == owner.id,
        )

    def _rows(self, statement: sa.Executable) -> Sequence[RowMapping]:
        return self._conn.execute(statement).mappings().all()
