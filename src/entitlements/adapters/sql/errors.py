"""The one translation of driver errors into the library's own, for every engine.

Every path out of the SQL store — statements, commits, rollbacks, closing a connection —
goes through `translate`, so a host sees the same `EntitlementsError` whatever the
engine said:

- a deadlock, a serialization failure or a lock wait that timed out → `Busy`
  (``retryable``: nothing was stored);
- a connection that broke → `ConnectionLost` (``retryable`` unless it broke during a
  commit, whose outcome is then unknown);
- an integrity violation → `Conflict`;
- anything else → `StorageError`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from sqlalchemy import exc

from entitlements.errors import Busy, Conflict, ConnectionLost, EntitlementsError, StorageError

__all__ = ["is_busy", "is_disconnect", "storage_errors", "translate"]

P = ParamSpec("P")
R = TypeVar("R")

# PostgreSQL: serialization_failure, deadlock_detected, lock_not_available (lock_timeout
# or NOWAIT)
BUSY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# MariaDB/MySQL: lock wait timeout, deadlock, and "lock wait timeout" of a statement
# that MariaDB reports after rolling the transaction back (ER_LOCK_ABORTED)
BUSY_MYSQL_CODES = frozenset({1205, 1213, 1689, 3572})
# MariaDB/MySQL: server gone away, lost connection, killed connection, shutdown
DISCONNECT_MYSQL_CODES = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2055, 4031})
# PostgreSQL: a prepared statement missing, or already there: the server session changed
# under the client, as it does behind a transaction pooler
POOLED_SQLSTATES = frozenset({"26000", "42P05"})


def _code(error: exc.DBAPIError) -> object:
    args: tuple[object, ...] = tuple(getattr(error.orig, "args", ()))
    return args[0] if args else None


def is_busy(error: BaseException) -> bool:
    """A deadlock, serialization failure or lock timeout: the database gave up on this
    call so that a concurrent one could proceed."""
    if not isinstance(error, exc.DBAPIError):
        return False
    if getattr(error.orig, "sqlstate", None) in BUSY_SQLSTATES:
        return True
    return _code(error) in BUSY_MYSQL_CODES


def is_disconnect(error: BaseException) -> bool:
    if not isinstance(error, exc.DBAPIError):
        return isinstance(error, exc.ResourceClosedError | exc.PendingRollbackError)
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    # 57P01-57P03: admin shutdown / crash shutdown / cannot connect now (pg_terminate_backend)
    # 08xxx: connection exceptions
    if sqlstate.startswith(("57P", "08")):
        return True
    if _unreachable_postgres(error):
        return True
    return _code(error) in DISCONNECT_MYSQL_CODES


def _unreachable_postgres(error: exc.DBAPIError) -> bool:
    """psycopg reports a refused or dropped connection (a server restarting, a failover
    in progress) as an OperationalError that carries no SQLSTATE: the server never said
    anything, so nothing was stored."""
    orig = error.orig
    module = type(orig).__module__ if orig is not None else ""
    return (
        module.startswith("psycopg")
        and isinstance(error, exc.OperationalError)
        and getattr(orig, "sqlstate", None) is None
    )


def translate(error: BaseException, *, committing: bool = False) -> EntitlementsError:
    """The library's error for a driver error (``committing``: it came from a commit,
    whose outcome a broken connection leaves unknown)."""
    if isinstance(error, EntitlementsError):
        return error
    if isinstance(error, exc.IntegrityError):
        return Conflict(f"the database refused the change: {error.orig}")
    if is_busy(error):
        return Busy(
            "the database asked to retry (deadlock, serialization failure or lock "
            f"timeout): {_said(error)}"
        )
    if is_disconnect(error):
        if committing:
            return ConnectionLost(
                f"the database connection broke during the commit, which may or may not "
                f"have been applied: {_said(error)}"
            )
        return ConnectionLost(
            f"the database connection broke; nothing was stored: {_said(error)}", retryable=True
        )
    if getattr(getattr(error, "orig", None), "sqlstate", None) in POOLED_SQLSTATES:
        return StorageError(
            f"storage failed: {_said(error)} — behind a transaction pooler (PgBouncer "
            'in transaction mode)? Open the store with SqlStore.from_url(url, pooler="transaction")'
        )
    return StorageError(f"storage failed: {type(error).__name__}: {_said(error)}")


def _said(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    text = str(orig if orig is not None else error)
    return text if len(text) <= 500 else text[:497] + "..."


def storage_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate driver errors raised by ``fn`` into the library's own."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except EntitlementsError:
            raise
        except exc.SQLAlchemyError as error:
            raise translate(error) from error

    return wrapper
