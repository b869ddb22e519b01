"""The SQL store: SQLAlchemy 2.x Core, explicit row ⇄ domain mapping, one transaction per
unit of work — or a savepoint inside the host's own transaction.

Three ways to bind it:

- ``SqlStore.from_url("sqlite:///entitlements.db")`` — the store owns an engine;
- ``SqlStore(engine)`` — the host's engine; each unit of work is its own transaction;
- ``SqlStore(connection)`` or ``SqlStore(session)`` — the host's connection or ORM
  session: our writes join its transaction inside a SAVEPOINT, so a failed call of ours
  leaves the host's transaction usable, and the commit stays the host's.

Driver errors never leave the adapter — from statements, commits, rollbacks or closing
a connection: `entitlements.adapters.sql.errors.translate` makes them `Busy`,
`ConnectionLost`, `Conflict` or `StorageError`, subclasses of `EntitlementsError`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.audit import SqlAudit
from entitlements.adapters.sql.changes import SqlFeed, SqlRevisions, insert_changes
from entitlements.adapters.sql.contracts import SqlContracts
from entitlements.adapters.sql.errors import storage_errors, translate
from entitlements.adapters.sql.hints import CommitNotices
from entitlements.adapters.sql.history import flush_history
from entitlements.adapters.sql.invoices import SqlInvoices
from entitlements.adapters.sql.notifications import SqlNotifications
from entitlements.adapters.sql.overrides import SqlOverrides
from entitlements.adapters.sql.plan_migrations import SqlPlanMigrations
from entitlements.adapters.sql.plans import SqlPlans
from entitlements.adapters.sql.provider import SqlProvider
from entitlements.adapters.sql.replicas import ReadRouting
from entitlements.adapters.sql.requests import SqlRequests
from entitlements.adapters.sql.subscriptions import SqlSubscriptions
from entitlements.adapters.sql.usage import SqlSeats, SqlUsage
from entitlements.domain.change import ChangeKind, FeedPage
from entitlements.domain.owner import Owner
from entitlements.errors import EntitlementsError, InvalidInput, StorageError

if TYPE_CHECKING:
    from entitlements.ports import Store

__all__ = ["SqlStore", "SqlUnitOfWork"]

READ_ONLY = "entitlements_read_only"


class SqlUnitOfWork:
    """One transaction (or, inside the host's transaction, one savepoint).

    Append-only writes wait in the unit of work and go out in one statement per table
    (an ``executemany``) when it commits, at a savepoint, or before anything reads their
    table in this unit of work, so it always reads its own writes: audit events
    (`pending_audit`), history stretches (`pending_history`), feed rows (`noted`) and
    the rows repositories hand to `buffer` (notifications, invoice lines); updates that
    many calls add up wait in `defer` (the invoice counter). A job touching many owners in
    one unit of work — the sweep's groups, a migration's batch — thus pays one round trip
    per table, not one per row. A repository buffers only rows whose insert nobody waits
    on for an answer (an id, a conflict), and reads the table only after `flush`.
    """

    def __init__(
        self,
        store: SqlStore,
        tenant: str | None,
        join: Connection | Session | None = None,
        *,
        read_only: bool = False,
        private: bool = False,
        routed: bool = False,
    ) -> None:
        self.tenant = tenant
        self._routed = routed
        self._store = store
        self._join = join
        self._read_only = read_only
        self._private = private
        self._connection: Connection | None = None
        self._transaction: sa.Transaction | None = None
        self._owns_connection = False
        self._inside_host = False
        self.plans = SqlPlans(self)
        self.subscriptions = SqlSubscriptions(self)
        self.overrides = SqlOverrides(self)
        self.audit = SqlAudit(self)
        self.usage = SqlUsage(self)
        self.seats = SqlSeats(self)
        self.contracts = SqlContracts(self)
        self.provider = SqlProvider(self)
        self.requests = SqlRequests(self)
        self.notifications = SqlNotifications(self)
        self.migrations = SqlPlanMigrations(self)
        self.invoices = SqlInvoices(self)
        self.revisions = SqlRevisions(self)
        self.feed = SqlFeed(self)
        self._doomed: EntitlementsError | None = None
        self.bumped: dict[Owner, int] = {}
        self.unstamped: set[Owner] = set()
        """Owners whose revision row this unit of work created: no counters to stamp."""
        self.noted: dict[Owner | None, ChangeKind] = {}
        self.pending_audit: list[dict[str, Any]] = []
        self.pending_history: dict[sa.Table, list[dict[str, Any]]] = {}
        """History stretches appended, inserted at commit (see `history`)."""
        self.pending_rows: dict[sa.Table, tuple[Any, list[dict[str, Any]]]] = {}
        """Rows `buffer` holds, with the statement that inserts them, per table."""
        self.deferred: dict[Any, Callable[[], None]] = {}
        """Writes `defer` holds, run by a full `flush`."""
        self.numbers: dict[str, int] = {}
        """The last invoice number taken per prefix and not yet written (see
        `SqlInvoices.next_number`)."""
        self.committed_revision: int | None = None
        self.effective_at: datetime | None = None

    def buffer(self, table: sa.Table, row: dict[str, Any], statement: Any = None) -> None:
        """Insert ``row`` into ``table`` with the others buffered for it, at the latest
        when the unit of work commits (``statement``: the insert to use, e.g. one that
        skips a row whose key is stored; the same for every row of a table)."""
        insert = table.insert() if statement is None else statement
        self.pending_rows.setdefault(table, (insert, []))[1].append(row)

    def defer(self, key: Any, write: Callable[[], None]) -> None:
        """Run ``write`` at the next full `flush` (a savepoint, the commit), once per
        ``key``: an update that many calls of this unit of work add up, written once."""
        self.deferred.setdefault(key, write)

    def flush(self, table: sa.Table | None = None) -> None:
        """Insert the rows buffered for ``table`` (every table: ``None``, which also runs
        the deferred writes) now: before a read of it, a savepoint or the commit."""
        if table is None:
            while self.deferred:
                self.deferred.pop(next(iter(self.deferred)))()
        for buffered, (statement, rows) in self.pending_rows.items():
            if rows and (table is None or buffered is table):
                self.connection.execute(statement, list(rows))
                rows.clear()

    def written_at(self) -> datetime:
        """The instant the history dates this unit of work's writes with."""
        return self.effective_at or datetime.now(UTC)

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise StorageError("the unit of work is not open; use it in a `with` block")
        return self._connection

    @storage_errors
    def __enter__(self) -> SqlUnitOfWork:
        replica = self._store.routing.connect() if self._routed and self._store.routing else None
        connection, owned = (
            (replica, True)
            if replica is not None
            else (self._store.engine.connect(), True)
            if self._private
            else self._store._acquire(self._join)
        )
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
        """Roll back what was not committed and give the connection back. A rollback or
        close that fails (the connection died) never hides the error that caused the
        rollback, and never surfaces as a driver error: after a read, or once the
        transaction is over, a dead connection loses nothing and is only discarded."""
        failed = self._end()
        if isinstance(exc_value, exc.SQLAlchemyError):
            raise translate(exc_value) from exc_value
        if failed is not None and exc_value is None and self._inside_host and not self._read_only:
            # the host's transaction may now be unusable: say so rather than pass silently
            raise translate(failed) from failed

    def _end(self) -> Exception | None:
        """Roll back (if still open) and release the connection; the first failure."""
        failed: Exception | None = None
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        except Exception as error:
            failed = error
        finally:
            self._transaction = None
            if self._owns_connection and self._connection is not None:
                try:
                    self._connection.close()
                except Exception as error:
                    failed = failed or error
            self._connection = None
        return failed

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A call inside an atomic block: on failure only its own writes roll back. When
        the engine has already ended the whole transaction (MariaDB does on a deadlock,
        so the savepoint is gone), the call's own error is kept and the block is doomed:
        its commit raises that error too instead of committing half of it."""
        bumped, noted, unstamped = dict(self.bumped), dict(self.noted), set(self.unstamped)
        try:
            # audit rows appended before the savepoint are written before it: a rollback
            # to it must not take them along
            self.audit.flush()
            flush_history(self)
            self.flush()
            nested = self.connection.begin_nested()
        except exc.SQLAlchemyError as error:
            raise translate(error) from error
        try:
            yield
        except BaseException as error:
            self.bumped, self.noted, self.unstamped = bumped, noted, unstamped
            self._undo(nested, error)
            raise
        else:
            try:
                nested.commit()
            except exc.SQLAlchemyError as error:
                raise translate(error) from error

    def _undo(self, nested: sa.NestedTransaction, error: BaseException) -> None:
        """Roll back to the savepoint after ``error``; raises ``error`` translated when it
        came from the driver. A savepoint the engine already dropped dooms the block."""
        self.pending_audit.clear()
        self.pending_history.clear()
        self.pending_rows.clear()
        self.deferred.clear()
        self.numbers.clear()
        self.overrides.forget_all()  # read under locks the rollback may release
        self.subscriptions.forget_indexed()  # postings written since may be undone
        translated = translate(error) if isinstance(error, exc.SQLAlchemyError) else None
        try:
            if nested.is_active:
                nested.rollback()
        except Exception:
            self._doomed = translated or (
                error if isinstance(error, EntitlementsError) else StorageError(str(error))
            )
        if translated is not None:
            raise translated from error

    def commit(self) -> None:
        if self._transaction is None:
            raise StorageError("the unit of work is not open")
        if self._doomed is not None:
            raise self._doomed
        try:
            self.flush()
            revision = insert_changes(
                self.connection,
                self.feed.rows(datetime.now(UTC)),
                self.pending_audit,
                self.pending_history,
            )
        except exc.SQLAlchemyError as error:
            raise translate(error) from error
        try:
            self._transaction.commit()
        except exc.SQLAlchemyError as error:
            raise translate(error, committing=True) from error
        self.committed_revision = revision
        routing = self._store.routing
        if routing is not None and not self._read_only:
            if self._inside_host:  # the host commits later: learn the position afresh then
                self.when_durable(routing.forget)
            else:
                routing.after_commit(self.connection)
        notices = self._store.notices
        if revision is not None and notices is not None:
            self.when_durable(notices.committed)
        self.noted.clear()
        self.bumped.clear()
        self.unstamped.clear()

    @storage_errors
    def rollback(self) -> None:
        self.pending_audit.clear()
        self.pending_history.clear()
        self.pending_rows.clear()
        self.deferred.clear()
        self.numbers.clear()
        self.noted.clear()
        self.bumped.clear()
        self.unstamped.clear()
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


def _routing(
    primary: Engine, urls: Sequence[str], max_lag: float, options: dict[str, Any]
) -> ReadRouting:
    if primary.dialect.name not in ("postgresql", "mysql"):
        raise InvalidInput(
            "replicas", "read replicas are supported on PostgreSQL and MariaDB", list(urls)
        )
    if isinstance(max_lag, bool) or not isinstance(max_lag, int | float) or not max_lag >= 0:
        raise InvalidInput("max_replica_lag", "must be a number of seconds, 0 or more", max_lag)
    if isinstance(urls, str) or not all(isinstance(u, str) for u in urls):
        raise InvalidInput("replicas", "must be a list of database URLs", urls)
    try:
        engines = [sa.create_engine(url, **options) for url in urls]
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
        raise InvalidInput("replicas", f"cannot open {list(urls)!r}: {error}", urls) from error
    return ReadRouting(primary, engines, float(max_lag))


def _unprepared_behind_a_proxy(engine: Engine) -> None:
    """A server listening on another port than the one the URL names is reached through
    something in between — most often PgBouncer on 6432 in front of 5432 — where
    statements prepared on the server meet other clients' (`prepared statement "_pg3_0"
    already exists`). Such connections prepare nothing; a pooler on the server's own
    port cannot be told apart and needs ``pooler="transaction"``."""
    named = engine.url.port or 5432

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        try:
            port = dbapi_connection.execute("SELECT current_setting('port')").fetchone()[0]
        finally:
            dbapi_connection.rollback()
        if int(port) != named:
            dbapi_connection.prepare_threshold = None


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


def _url_hint(url: str, error: Exception) -> str:
    """What to do about a URL SQLAlchemy cannot open: the dialect's name when the URL
    says ``postgres://`` (Heroku's and libpq's spelling), the extra that installs a
    missing driver."""
    from entitlements.extras import DRIVER_EXTRAS

    if url.startswith(("postgres://", "postgres+")):
        rest = url.split("://", 1)[1]
        return f"; SQLAlchemy calls the dialect postgresql: write postgresql+psycopg://{rest}"
    missing = getattr(error, "name", None) or ""
    extra = DRIVER_EXTRAS.get(missing.split(".")[0])
    return f"; pip install 'entitlements[{extra}]'" if extra else ""


def _tenants_of(dialect: str, table: sa.Table, *where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """The tenants with rows in ``table``, found one index probe per tenant, not by
    reading every row: the sweep and the console ask for them on every run. MariaDB
    probes so by itself for a DISTINCT of an index's first column (a loose index scan),
    but reads the whole index for each step of the recursive probe below; PostgreSQL's
    DISTINCT reads every row, so it takes the next tenant after the last one found."""
    tenant = table.c.tenant
    if dialect in ("mysql", "mariadb"):
        return sa.select(tenant).where(*where).distinct()
    found = (
        sa.select(sa.func.min(tenant).label("tenant"))
        .where(*where)
        .cte(f"tenants_{table.name}", recursive=True)
    )
    following = sa.select(sa.func.min(tenant)).where(tenant > found.c.tenant, *where)
    found = found.union_all(
        sa.select(following.scalar_subquery()).where(found.c.tenant.is_not(None))
    )
    return sa.select(found.c.tenant).where(found.c.tenant.is_not(None))


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
        self.listen_url: str | None = None
        self.pooler: str | None = None
        self._hints: weakref.WeakSet[Any] = weakref.WeakSet()
        self.routing: ReadRouting | None = None
        self.notices = (
            CommitNotices.of(self.engine) if self.engine.dialect.name == "postgresql" else None
        )
        """PostgreSQL: wakes other processes' followers after this process's commits."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        listen_url: str | None = None,
        pooler: str | None = None,
        replicas: Sequence[str] = (),
        max_replica_lag: float = 1.0,
        **engine_options: Any,
    ) -> SqlStore:
        """``sqlite:///entitlements.db``, ``postgresql+psycopg://...``, ``mysql+pymysql://...``

        MariaDB/MySQL connections run at READ COMMITTED (unless ``isolation_level`` says
        otherwise), as PostgreSQL does by default: an UPDATE that matches nothing then
        holds no lock, and reads see what committed before them on every engine alike.

        Behind a transaction pooler (PgBouncer ``pool_mode = transaction``) say
        ``pooler="transaction"``: no statement is prepared on the server (the pooler hands
        the server session to other clients between transactions), and give
        ``listen_url=`` (the primary, directly) so that the change feed's pushes reach this
        process; without it a deaf ``LISTEN`` is detected and the feed is polled.

        ``replicas`` (PostgreSQL streaming replicas, MariaDB replicas with GTIDs): reads outside a host's transaction
        go to a replica that has replayed everything this process needs — its own
        writes, what its change-feed follower has seen, and the primary's position at
        most ``max_replica_lag`` seconds ago — and to the primary otherwise; a replica
        that fails is skipped for a few seconds. Writes always go to the primary. See
        `entitlements.adapters.sql.replicas`."""
        if pooler not in (None, "transaction", "session"):
            raise InvalidInput("pooler", 'must be None, "transaction" or "session"', pooler)
        try:
            if url.startswith(("mysql", "mariadb")):
                engine_options.setdefault("isolation_level", "READ COMMITTED")
            if pooler == "transaction" and url.startswith("postgresql+psycopg"):
                connect_args = dict(engine_options.get("connect_args", {}))
                connect_args.setdefault("prepare_threshold", None)
                engine_options["connect_args"] = connect_args
            engine = sa.create_engine(url, **engine_options)
            if listen_url is not None:
                sa.make_url(listen_url)
        except TypeError as error:
            raise InvalidInput(
                "engine_options", f"not an option of the store or of create_engine: {error}"
            ) from error
        except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as error:
            raise InvalidInput(
                "url", f"cannot open {url!r}: {error}{_url_hint(url, error)}", url
            ) from error
        if engine.dialect.name == "sqlite":
            _sqlite_transactions(engine)
        if pooler is None and engine.dialect.driver == "psycopg":
            _unprepared_behind_a_proxy(engine)
        store = cls(engine)
        store.listen_url = listen_url
        store.pooler = pooler
        if replicas:
            store.routing = _routing(engine, replicas, max_replica_lag, engine_options)
        return store

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
        routed = read_only and join is None and self._session is None and self._connection is None
        return SqlUnitOfWork(self, tenant, join, read_only=read_only, routed=routed)

    @storage_errors
    def read_changes(self, after: int, missing: tuple[int, ...] = ()) -> FeedPage:
        """The change feed after ``after``, read on a connection of its own (never the
        host's, which another thread may be using)."""
        with SqlUnitOfWork(self, None, read_only=True, private=True) as uow:
            page = uow.feed.read(after, missing)
            if self.routing is not None:
                self.routing.note_followed(uow.connection)
            return page

    @storage_errors
    def feed_head(self) -> int:
        with SqlUnitOfWork(self, None, read_only=True, private=True) as uow:
            return uow.feed.head()

    def change_hints(self) -> list[Any]:
        """Pushes from the engine that wake the feed follower early."""
        from entitlements.adapters.sql.hints import hints_for

        hints = hints_for(self.engine, self.listen_url)
        self._hints.update(hints)
        return hints

    def health(self) -> dict[str, Any]:
        """What a host's monitoring should watch: how this process hears of other
        processes' writes (``"push"``, ``"polling"``, or ``"deaf"`` when a ``LISTEN`` was
        found to receive nothing — a transaction pooler in between), how often the push
        connection had to be opened again, and the pooler mode it was told of."""
        listeners = [h for h in self._hints if hasattr(h, "deaf")]
        wakes = "polling"
        if listeners:
            wakes = "deaf" if any(h.deaf for h in listeners) else "push"
        elif self._hints:
            wakes = "push"
        return {
            "engine": self.engine.dialect.name,
            "pooler": self.pooler,
            "wakes": wakes,
            "listen_reconnects": sum(getattr(h, "reconnects", 0) for h in listeners),
            **(self.routing.health() if self.routing is not None else {}),
        }

    @property
    def shared(self) -> bool:
        """Whether other processes may write to this database (not an in-memory SQLite)."""
        return not (
            self.engine.dialect.name == "sqlite"
            and self.engine.url.database in (None, "", ":memory:")
        )

    @storage_errors
    def tenants(self) -> Sequence[str | None]:
        with self.unit_of_work(None, read_only=True) as uow:
            dialect = uow.connection.dialect.name
            query = sa.union(
                _tenants_of(dialect, t.subscriptions),
                _tenants_of(dialect, t.overrides),
                _tenants_of(dialect, t.reservations, t.reservations.c.status == "held"),
                _tenants_of(dialect, t.contracts),
                _tenants_of(dialect, t.requests),
                _tenants_of(dialect, t.notifications, t.notifications.c.delivered_at.is_(None)),
                _tenants_of(
                    dialect, t.provider_commands, t.provider_commands.c.status == "pending"
                ),
            )
            found = {row[0] or None for row in uow.connection.execute(query)}
        return sorted(found, key=lambda x: (x is not None, x or ""))

    @storage_errors
    def create_schema(self) -> None:
        """Bring the database to the latest schema with the shipped migrations."""
        from entitlements.adapters.sql import migrations

        connection, owned = self._acquire()
        try:
            migrations.forget_dropped_schema(connection, t.plans.name)
            if migrations.at_head(connection):
                return
            migrations.upgrade(connection)
            if owned:
                connection.commit()
        finally:
            if owned:
                connection.close()

    @property
    def schema_head(self) -> str:
        """The schema revision this version of the library ships and needs."""
        from entitlements.adapters.sql.migrations import HEAD

        return HEAD

    @storage_errors
    def schema_revision(self) -> str | None:
        """The schema revision the database is at (``None``: no schema yet), read from the
        migrations' version table without running Alembic: what ``entitlements db
        current`` shows, and what every command checks against `schema_head` before it
        touches the database."""
        from entitlements.adapters.sql.migrations import VERSION_TABLE

        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table(VERSION_TABLE):
                return None
            rows = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
            versions = sorted(str(v) for v in rows.scalars())
        return versions[-1] if versions else None

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


if TYPE_CHECKING:

    def _is_a_store(store: SqlStore) -> Store:
        return store
