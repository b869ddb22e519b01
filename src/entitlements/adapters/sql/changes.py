"""Owners' terms revisions and the change feed in SQL.

A terms write bumps the owner's revision row under its exclusive lock, then stamps the
owner's live usage counters with it; a consumption's conditional UPDATE names the
revision it resolved at, so a process holding terms another process changed is refused
by the database itself. The feed gets one row per owner a transaction changed, written
just before it commits, so numbers are handed out close to commit; followers still track
numbers they saw skipped, because concurrent transactions commit out of order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from entitlements.adapters.sql import tables as t
from entitlements.adapters.sql.repository import Repository, storage_errors, tenant_of
from entitlements.domain.change import Change, ChangeKind, FeedPage
from entitlements.domain.owner import Owner
from entitlements.domain.usage import FOREVER

__all__ = ["SqlFeed", "SqlRevisions", "insert_changes"]

_r = t.owner_revisions.c
_OWNER = (
    _r.tenant == sa.bindparam("p_tenant"),
    _r.owner_kind == sa.bindparam("p_kind"),
    _r.owner_id == sa.bindparam("p_id"),
)
_CURRENT = sa.select(_r.revision).where(*_OWNER)
_LOCKED = _CURRENT.with_for_update(read=True)
_EXCLUSIVE = _CURRENT.with_for_update()
_CLAIM = _CURRENT.with_for_update(skip_locked=True)
_l = t.tenant_locks.c
_RULE = sa.select(_l.rule).where(
    _l.tenant == sa.bindparam("p_tenant"), _l.rule == sa.bindparam("p_rule")
)
_RULE_LOCKED = _RULE.with_for_update()
_c = t.usage_counters.c
_STAMP_ALL = (
    t.usage_counters.update()
    .where(
        _c.tenant == sa.bindparam("p_tenant"),
        _c.owner_kind == sa.bindparam("p_kind"),
        _c.owner_id == sa.bindparam("p_id"),
    )
    .values(terms_revision=sa.bindparam("p_revision"))
)
_STAMP_LIVE = _STAMP_ALL.where(
    sa.or_(_c.period_start == FOREVER, _c.period_start >= sa.bindparam("p_since"))
)


_CREATE_HELD = (
    mysql.insert(t.owner_revisions)
    .values(
        tenant=sa.bindparam("p_tenant"),
        owner_kind=sa.bindparam("p_kind"),
        owner_id=sa.bindparam("p_id"),
        revision=0,
    )
    .on_duplicate_key_update(revision=t.owner_revisions.c.revision)
)
_FIRST = 1  # the revision a bump gives a row it creates; later bumps add two


@cache
def _revision_upsert(dialect: str, *, bump: bool, returning: bool = True) -> Any:
    """An INSERT of revision 1 (or 0) that, on an existing row, adds two (or nothing).
    Bumped, 1 comes back only from a row that was not there: no counter exists without
    its owner's row (they are created under its lock), so there is nothing to stamp."""
    values: dict[str, Any] = {
        "tenant": sa.bindparam("p_tenant"),
        "owner_kind": sa.bindparam("p_kind"),
        "owner_id": sa.bindparam("p_id"),
        "revision": 1 if bump else 0,
    }
    keys = ["tenant", "owner_kind", "owner_id"]
    if dialect in ("postgresql", "sqlite"):  # the same ON CONFLICT, each its own dialect's
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        upsert = insert(t.owner_revisions).values(**values)
        if not bump:
            return upsert.on_conflict_do_nothing(index_elements=keys)
        return upsert.on_conflict_do_update(
            index_elements=keys, set_={"revision": t.owner_revisions.c.revision + 2}
        ).returning(t.owner_revisions.c.revision)
    my = mysql.insert(t.owner_revisions).values(**values)
    if not bump:
        return my.prefix_with("IGNORE")  # a duplicate takes a shared lock, not an exclusive one
    bumped = my.on_duplicate_key_update(revision=t.owner_revisions.c.revision + 2)
    return bumped.returning(t.owner_revisions.c.revision) if returning else bumped


class SqlRevisions(Repository):
    def _params(self, owner: Owner) -> dict[str, Any]:
        self._scope(owner)
        return {"p_tenant": self._t, "p_kind": owner.kind, "p_id": owner.id}

    @storage_errors
    def current(self, owner: Owner) -> int:
        found = self._conn.execute(_CURRENT, self._params(owner)).scalar()
        return int(found or 0)

    @storage_errors
    def lock(self, owner: Owner) -> int:
        params = self._params(owner)
        bumped = self._uow.bumped.get(owner)
        if bumped is not None:
            return bumped
        found = self._conn.execute(_LOCKED, params).scalar()
        if found is not None:
            return int(found)
        # the row must exist for a lock to hold anything: a concurrent first writer then
        # waits for us, or we for it
        self._conn.execute(_revision_upsert(self._conn.dialect.name, bump=False), params)
        return int(self._conn.execute(_LOCKED, params).scalar_one())

    @storage_errors
    def lock_rule(self, rule: str) -> None:
        params = {"p_tenant": self._t, "p_rule": rule}
        row = {"tenant": self._t, "rule": rule}
        dialect = self._conn.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            # an upsert takes the row's exclusive lock at once, also on the first use in a
            # tenant: INSERT IGNORE would take a shared lock on the duplicate, and two
            # first users upgrading theirs would deadlock
            self._conn.execute(
                mysql.insert(t.tenant_locks).values(**row).on_duplicate_key_update(rule=rule)
            )
            return
        if self._conn.execute(_RULE_LOCKED, params).first() is not None:
            return
        # first use in this tenant: create the row (a concurrent creator's wins), then lock it
        insert = (postgresql if dialect == "postgresql" else sqlite).insert(t.tenant_locks)
        self._conn.execute(insert.values(**row).on_conflict_do_nothing())
        self._conn.execute(_RULE_LOCKED, params).one()

    @storage_errors
    def claim(self, owner: Owner) -> bool:
        params = self._params(owner)
        if owner in self._uow.bumped:
            return True
        if self._conn.execute(_CLAIM, params).first() is not None:
            return True
        if self._conn.execute(_CURRENT, params).first() is not None:
            return False  # another unit of work holds it
        # no row yet: create it and hold it (a concurrent first writer is waited for)
        dialect = self._conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            self._conn.execute(_revision_upsert(dialect, bump=False), params)
            self._conn.execute(_EXCLUSIVE, params).scalar_one()
        else:  # an upsert locks exclusively at once (see `lock_rule`)
            self._conn.execute(
                mysql.insert(t.owner_revisions)
                .values(tenant=self._t, owner_kind=owner.kind, owner_id=owner.id, revision=0)
                .on_duplicate_key_update(revision=t.owner_revisions.c.revision)
            )
        return True

    @storage_errors
    def claim_many(self, owners: Sequence[Owner]) -> set[Owner]:
        """The owners' rows locked with one ``SELECT ... FOR UPDATE SKIP LOCKED`` (SQLite:
        one writer, a plain read); an owner without a row yet is claimed alone (`claim`
        creates it), and one whose row exists but was skipped is held by another."""
        wanted = {self._scope(owner) for owner in owners} - set(self._uow.bumped)
        claimed = set(owners) - wanted
        if not wanted:
            return claimed
        pairs = sa.tuple_(_r.owner_kind, _r.owner_id).in_([(o.kind, o.id) for o in wanted])
        rows = sa.select(_r.owner_kind, _r.owner_id).where(_r.tenant == self._t, pairs)
        locked = {tuple(r) for r in self._conn.execute(rows.with_for_update(skip_locked=True))}
        claimed |= {o for o in wanted if (o.kind, o.id) in locked}
        return claimed | self._claim_unlocked([o for o in wanted if (o.kind, o.id) not in locked])

    def _claim_unlocked(self, skipped: list[Owner]) -> set[Owner]:
        """Of the owners a locking read passed over, those with no row yet, made and held;
        the others are another unit of work's."""
        if not skipped:
            return set()
        pairs = sa.tuple_(_r.owner_kind, _r.owner_id).in_([(o.kind, o.id) for o in skipped])
        rows = sa.select(_r.owner_kind, _r.owner_id).where(_r.tenant == self._t, pairs)
        held = {tuple(r) for r in self._conn.execute(rows)}
        return self._create_held([o for o in skipped if (o.kind, o.id) not in held])

    def _create_held(self, owners: list[Owner]) -> set[Owner]:
        """Rows for owners that had none, made and locked (`claim`'s last step, for many in
        one statement): a concurrent first writer is waited for, never skipped."""
        if not owners:
            return set()
        params = [{"p_tenant": self._t, "p_kind": o.kind, "p_id": o.id} for o in owners]
        dialect = self._conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            self._conn.execute(_revision_upsert(dialect, bump=False), params)
            pairs = sa.tuple_(_r.owner_kind, _r.owner_id).in_([(o.kind, o.id) for o in owners])
            lock = sa.select(_r.owner_id).where(_r.tenant == self._t, pairs).with_for_update()
            self._conn.execute(lock).all()
        else:  # an upsert locks exclusively at once (see `lock_rule`)
            self._conn.execute(_CREATE_HELD, params)
        return set(owners)

    @storage_errors
    def bump(self, owner: Owner, since: datetime | None = None, *, stamp: bool = True) -> int:
        params = self._params(owner)
        done = self._uow.bumped.get(owner)
        if done is not None:
            return done
        dialect = self._conn.dialect
        returning = dialect.insert_returning  # MariaDB too: its upsert returns the new row
        upsert = _revision_upsert(dialect.name, bump=True, returning=returning)
        if returning:
            revision = int(self._conn.execute(upsert, params).scalar_one())
        else:
            self._conn.execute(upsert, params)
            revision = int(self._conn.execute(_EXCLUSIVE, params).scalar_one())
        self._uow.bumped[owner] = revision
        self._uow.feed.note(owner, ChangeKind.TERMS)
        if revision == _FIRST:
            self._uow.unstamped.add(owner)
        elif stamp:
            self.stamp(owner, since)
        return revision

    @storage_errors
    def bump_many(self, owners: Sequence[Owner]) -> Mapping[Owner, int]:
        fresh = [
            o for o in dict.fromkeys(self._scope(o) for o in owners) if o not in self._uow.bumped
        ]
        dialect = self._conn.dialect
        if len(fresh) > 1 and dialect.insert_returning:
            found = self._bump_together(fresh)
            for owner in fresh:
                revision = found[(owner.kind, owner.id)]
                self._uow.bumped[owner] = revision
                self._uow.feed.note(owner, ChangeKind.TERMS)
                if revision == _FIRST:
                    self._uow.unstamped.add(owner)
        else:
            for owner in fresh:
                self.bump(owner, stamp=False)
        return {o: self._uow.bumped[o] for o in owners}

    def _bump_together(self, owners: Sequence[Owner]) -> dict[tuple[str, str], int]:
        """One upsert moving every owner's revision, in the given (stable) order."""
        rows = [
            {"tenant": self._t, "owner_kind": o.kind, "owner_id": o.id, "revision": _FIRST}
            for o in owners
        ]
        table = t.owner_revisions
        keys = ["tenant", "owner_kind", "owner_id"]
        name = self._conn.dialect.name
        statement: Any
        if name in ("postgresql", "sqlite"):
            insert = postgresql.insert if name == "postgresql" else sqlite.insert
            statement = insert(table).values(rows)
            statement = statement.on_conflict_do_update(
                index_elements=keys, set_={"revision": table.c.revision + 2}
            )
        else:
            statement = mysql.insert(table).values(rows)
            statement = statement.on_duplicate_key_update(revision=table.c.revision + 2)
        returned = self._conn.execute(
            statement.returning(_r.owner_kind, _r.owner_id, _r.revision)
        ).all()
        return {(kind, id_): int(revision) for kind, id_, revision in returned}

    @storage_errors
    def stamp_many(self, since: Mapping[Owner, datetime | None]) -> None:
        owners = [self._scope(o) for o in since if self._scope(o) not in self._uow.unstamped]
        if not owners:
            return
        starts = list(since.values())
        earliest = None if None in starts else min(s for s in starts if s is not None)
        mine = sa.select(_r.revision).where(
            _r.tenant == _c.tenant, _r.owner_kind == _c.owner_kind, _r.owner_id == _c.owner_id
        )
        statement = (
            t.usage_counters.update()
            .where(
                _c.tenant == self._t,
                sa.tuple_(_c.owner_kind, _c.owner_id).in_([(o.kind, o.id) for o in owners]),
            )
            .values(terms_revision=mine.scalar_subquery())
        )
        if earliest is not None:
            statement = statement.where(
                sa.or_(_c.period_start == FOREVER, _c.period_start >= earliest)
            )
        self._conn.execute(statement)

    @storage_errors
    def stamp(self, owner: Owner, since: datetime | None = None) -> None:
        params = self._params(owner)
        if owner in self._uow.unstamped:
            return  # its revision row is new: it has no counters
        statement = _STAMP_ALL if since is None else _STAMP_LIVE
        revision = self._uow.bumped[owner]
        self._conn.execute(statement, {**params, "p_revision": revision, "p_since": since})


_FEED_INSERT = t.changes.insert()
_MAX_PARAMETERS = 30_000  # PostgreSQL takes at most 65,535 in one statement
_ONE_STATEMENT_ROWS = 8
_FEED_INSERT_RETURNING = t.changes.insert().returning(t.changes.c.seq)


_Pending = list[tuple[sa.Table, list[dict[str, Any]]]]


def insert_changes(
    connection: sa.Connection,
    rows: Sequence[dict[str, Any]],
    audit: list[dict[str, Any]] | None = None,
    history: Mapping[sa.Table, list[dict[str, Any]]] | None = None,
) -> int | None:
    """Write the feed rows of a committing unit of work, the audit rows and the history
    stretches it appended (emptying ``audit`` and ``history``); returns the highest feed
    number. PostgreSQL takes a few of them in one statement (the audit and history rows
    in writable CTEs). The feed statements are built once: a multi-VALUES insert would be
    compiled anew for every count of rows."""
    pending: _Pending = [(t.audit_events, audit)] if audit else []
    pending += [(table, found) for table, found in (history or {}).items() if found]
    if pending and rows and _fits_one_statement(connection, rows, pending):
        return _insert_together(connection, rows, pending)
    for table, found in pending:
        connection.execute(table.insert(), list(found))
        found.clear()
    return _insert_feed(connection, rows)


def _fits_one_statement(
    connection: sa.Connection, rows: Sequence[dict[str, Any]], pending: _Pending
) -> bool:
    """PostgreSQL, for a unit of work of a few rows: a multi-VALUES statement is compiled
    anew each time, at a cost that grows with its rows (for a group of 20 owners it cost
    more than the round trips it saves); more rows go one cached statement per table."""
    if connection.dialect.name != "postgresql":
        return False
    if len(rows) + sum(len(found) for _, found in pending) > _ONE_STATEMENT_ROWS:
        return False
    parameters = len(rows) * len(rows[0])
    parameters += sum(len(found) * len(found[0]) for _, found in pending)
    return parameters <= _MAX_PARAMETERS


def _insert_together(
    connection: sa.Connection, rows: Sequence[dict[str, Any]], pending: _Pending
) -> int:
    statement = t.changes.insert().values(list(rows)).returning(t.changes.c.seq)
    for table, found in pending:
        statement = statement.add_cte(table.insert().values(list(found)).cte(f"{table.name}_rows"))
        found.clear()
    return max(int(seq) for seq in connection.execute(statement).scalars())


def _insert_feed(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> int | None:
    if not rows:
        return None
    if connection.dialect.insert_returning:
        if len(rows) == 1:
            return int(connection.execute(_FEED_INSERT_RETURNING, rows[0]).scalar_one())
        result = connection.execute(_FEED_INSERT_RETURNING, list(rows))
        return max(int(seq) for seq in result.scalars())
    result = connection.execute(t.changes.insert().values(list(rows)))
    first = int(result.lastrowid)  # MySQL: the first of consecutive numbers of one INSERT
    return first + len(rows) - 1


_f = t.changes.c


class SqlFeed(Repository):
    def note(self, owner: Owner | None, kind: ChangeKind) -> None:
        noted = self._uow.noted
        if owner is None:
            noted[None] = ChangeKind.CATALOG
            return
        self._scope(owner)
        if noted.get(owner) is not ChangeKind.TERMS:
            noted[owner] = kind

    def rows(self, now: datetime) -> list[dict[str, Any]]:
        out = []
        for owner, kind in self._uow.noted.items():
            out.append(
                {
                    "tenant": None if owner is None else tenant_of(owner.tenant),
                    "owner_kind": None if owner is None else owner.kind,
                    "owner_id": None if owner is None else owner.id,
                    "kind": kind.value,
                    "at": now,
                }
            )
        return out

    @storage_errors
    def read(self, after: int, missing: Sequence[int] = (), limit: int = 10_000) -> FeedPage:
        wanted = _f.seq > after
        if missing:
            wanted = sa.or_(wanted, _f.seq.in_(list(missing)))
        entries = (
            sa.select(_f.seq, _f.tenant, _f.owner_kind, _f.owner_id, _f.kind)
            .where(wanted)
            .order_by(_f.seq)
            .limit(limit)
            .subquery()
        )
        state = sa.select(
            t.feed_state.c.pruned_through,
            sa.null(),
            sa.null(),
            sa.null(),
            sa.literal("~pruned"),
        )
        query = sa.union_all(
            sa.select(
                entries.c.seq,
                entries.c.tenant,
                entries.c.owner_kind,
                entries.c.owner_id,
                entries.c.kind,
            ),
            state,
        )
        changes: list[Change] = []
        pruned = 0
        for seq, tenant, kind_of_owner, owner_id, kind in self._conn.execute(query):
            if kind == "~pruned":
                pruned = int(seq)
                continue
            owner = (
                None if kind_of_owner is None else Owner(kind_of_owner, owner_id, tenant or None)
            )
            changes.append(Change(int(seq), ChangeKind(kind), owner))
        changes.sort(key=lambda c: c.seq)
        head = max([after, *(c.seq for c in changes)])
        return FeedPage(tuple(changes), pruned, head)

    @storage_errors
    def head(self) -> int:
        return int(self._conn.execute(sa.select(sa.func.max(_f.seq))).scalar() or 0)

    @storage_errors
    def prune(self, before: datetime, limit: int = 10_000) -> int:
        # the newest entry stays: SQLite (without AUTOINCREMENT) and older InnoDB hand
        # out max + 1, so deleting it would hand its number out again
        head = self.head()
        oldest = (
            sa.select(_f.seq)
            .where(_f.at < before, _f.seq < head)
            .order_by(_f.seq)
            .limit(limit)
            .subquery()
        )
        through = self._conn.execute(sa.select(sa.func.max(oldest.c.seq))).scalar()
        if through is None:
            return 0
        deleted = self._conn.execute(
            t.changes.delete().where(_f.seq <= through, _f.at < before)
        ).rowcount
        state = t.feed_state.c
        known = self._conn.execute(sa.select(state.pruned_through).where(state.id == 1)).scalar()
        if known is None:
            self._conn.execute(t.feed_state.insert().values(id=1, pruned_through=through))
        elif known < through:
            self._conn.execute(
                t.feed_state.update().where(state.id == 1).values(pruned_through=through)
            )
        return int(deleted)
