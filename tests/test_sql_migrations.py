"""The shipped migrations build exactly the schema the metadata declares, and go back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conftest import server_url
from entitlements.adapters.sql import metadata, migrations
from entitlements.adapters.sql.types import JSONDocument, UtcDateTime


def engine_for(kind: str, tmp_path) -> sa.Engine:
    if kind == "sqlite":
        return sa.create_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
    return sa.create_engine(server_url(kind))


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_upgrade_to_head_matches_the_metadata_and_downgrade_removes_it(
    kind, tmp_path, server_stores
):
    if kind != "sqlite":
        server_stores(
            kind
        )  # the session store's schema is rebuilt below; make sure it exists first
    engine = engine_for(kind, tmp_path)
    try:
        with engine.begin() as connection:
            migrations.downgrade(connection, "base")
            assert set(sa.inspect(connection).get_table_names()) <= {migrations.VERSION_TABLE}
            migrations.upgrade(connection)
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": migrations.VERSION_TABLE}
            )
            assert compare_metadata(context, metadata) == []
            tables = set(sa.inspect(connection).get_table_names())
            assert tables == {t.name for t in metadata.sorted_tables} | {migrations.VERSION_TABLE}
            migrations.downgrade(connection, "base")
            assert set(sa.inspect(connection).get_table_names()) <= {migrations.VERSION_TABLE}
            migrations.upgrade(connection)
    finally:
        engine.dispose()


def test_the_declared_head_is_alembics_head():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(migrations.config()).get_current_head() == migrations.HEAD


def _table(name: str, *columns: str, **typed) -> sa.TableClause:
    return sa.table(
        name, *(sa.column(c) for c in columns), *(sa.column(c, t) for c, t in typed.items())
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_0007_moves_the_plan_manager_out_of_metadata_and_back(kind, tmp_path, server_stores):
    if kind != "sqlite":
        server_stores(kind)
    engine = engine_for(kind, tmp_path)
    plans = _table(
        "ent_plans", "key", "name", "status", "latest_version", "revision", owner_kinds=JSONDocument
    )
    columns = ("id", "tenant", "owner_kind", "owner_id", "plan_key", "plan_version", "status")
    columns += ("cancel_at_period_end", "notes", "revision")
    rows = _table(
        "ent_subscriptions",
        *columns,
        metadata=JSONDocument,
        addons=JSONDocument,
        created_at=UtcDateTime,
        updated_at=UtcDateTime,
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            migrations.downgrade(connection, "base")
            migrations.upgrade(connection, "0006")
            connection.execute(
                plans.insert(),
                {
                    "key": "growth",
                    "name": "Growth",
                    "status": "active",
                    "owner_kinds": [],
                    "latest_version": 1,
                    "revision": 1,
                },
            )
            for index, meta in enumerate(({"plan_manager": "alice", "crm": "7"}, {"crm": "8"})):
                connection.execute(
                    rows.insert(),
                    {
                        "id": f"s{index}",
                        "tenant": "",
                        "owner_kind": "workspace",
                        "owner_id": f"w{index}",
                        "plan_key": "growth",
                        "plan_version": 1,
                        "status": "active",
                        "created_at": at,
                        "updated_at": at,
                        "cancel_at_period_end": False,
                        "notes": "",
                        "addons": [],
                        "revision": 1,
                        "metadata": meta,
                    },
                )
            migrations.upgrade(connection)
            moved = _table("ent_subscriptions", "id", "plan_manager", metadata=JSONDocument)
            found = connection.execute(sa.select(moved).order_by(moved.c.id)).all()
            assert [(r.plan_manager, r.metadata) for r in found] == [
                ("alice", {"crm": "7"}),
                (None, {"crm": "8"}),
            ]
            migrations.downgrade(connection, "0006")
            back = _table("ent_subscriptions", "id", metadata=JSONDocument)
            found = connection.execute(sa.select(back).order_by(back.c.id)).all()
            assert [r.metadata for r in found] == [
                {"plan_manager": "alice", "crm": "7"},
                {"crm": "8"},
            ]
            migrations.downgrade(connection, "base")
            migrations.upgrade(connection)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_0009_gives_owners_with_counters_a_revision_row(kind, tmp_path, server_stores):
    """A terms write that creates an owner's revision row stamps no counters: owners
    whose counters predate the rule get their row from the migration."""
    if kind != "sqlite":
        server_stores(kind)
    engine = engine_for(kind, tmp_path)
    counters = _table(
        "ent_usage_counters",
        "tenant",
        "owner_kind",
        "owner_id",
        "metric",
        "used",
        "reserved",
        "terms_revision",
        period_start=UtcDateTime,
    )
    revisions = _table("ent_owner_revisions", "tenant", "owner_kind", "owner_id", "revision")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            migrations.downgrade(connection, "base")
            migrations.upgrade(connection, "0008")
            connection.execute(
                revisions.insert(),
                {"tenant": "", "owner_kind": "org", "owner_id": "known", "revision": 7},
            )
            for owner_id, metric in (("known", "api"), ("bare", "api"), ("bare", "seats")):
                connection.execute(
                    counters.insert(),
                    {
                        "tenant": "",
                        "owner_kind": "org",
                        "owner_id": owner_id,
                        "metric": metric,
                        "period_start": at,
                        "used": 1,
                        "reserved": 0,
                        "terms_revision": 0,
                    },
                )
            migrations.upgrade(connection)
            found = connection.execute(
                sa.select(revisions.c.owner_id, revisions.c.revision).order_by(revisions.c.owner_id)
            ).all()
            assert [tuple(r) for r in found] == [("bare", 0), ("known", 7)]
            migrations.downgrade(connection, "base")
            migrations.upgrade(connection)
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_a_schema_dropped_with_the_metadata_is_created_again(kind, tmp_path, server_stores):
    """A host's test teardown runs ``metadata.drop_all()``: the version table and (on
    PostgreSQL) the feed's trigger function are not tables of the metadata, and must not
    make the next ``create_schema()`` fail or believe the schema is still there."""
    from entitlements import Entitlements, Plan
    from entitlements.adapters.sql import SqlStore

    store = (
        SqlStore.from_url(f"sqlite:///{tmp_path / 'dropped.db'}")
        if kind == "sqlite"
        else server_stores(kind)
    )
    try:
        store.create_schema()
        metadata.drop_all(store.engine)
        with store.engine.connect() as connection:
            assert set(sa.inspect(connection).get_table_names()) == {migrations.VERSION_TABLE}
            if kind == "postgres":
                left = connection.execute(
                    sa.text("SELECT count(*) FROM pg_proc WHERE proname = 'ent_changes_notify'")
                ).scalar_one()
                assert left == 0
        store.create_schema()
        with store.engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            assert tables == {t.name for t in metadata.sorted_tables} | {migrations.VERSION_TABLE}
            assert migrations.at_head(connection)
        ents = Entitlements(store)
        try:
            ents.plans.define(Plan("free", "Free", status="active"), actor="staff")
            assert ents.plans.get("free").name == "Free"
        finally:
            ents.close()
    finally:
        if kind == "sqlite":
            store.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_0010_backfills_the_history_from_the_audit_trail(kind, tmp_path, server_stores):
    """Upgrading a database that has no history: every audited write becomes a stretch,
    so past answers come back exactly; a subscription or override the trail knows
    nothing of holds its present state from its creation (what cannot be recovered)."""
    from entitlements import Entitlements, ManualClock, Owner
    from entitlements.adapters.sql import SqlStore
    from entitlements.testing.contract import CATALOG, START
    from test_history import POLICY, answers

    if kind == "sqlite":
        store = SqlStore.from_url(f"sqlite:///{tmp_path / 'backfill.db'}")
    else:
        server_stores(kind)
        store = SqlStore.from_url(server_url(kind))
    acme, globex = Owner("organization", "acme"), Owner("organization", "globex")
    clock = ManualClock(START)
    try:
        with store.engine.begin() as connection:
            migrations.downgrade(connection, "base")
            migrations.upgrade(connection)
        ents = Entitlements(store, clock=clock, policy=POLICY)
        for plan in CATALOG:
            ents.plans.define(plan, actor="staff")
        instants = []

        def step() -> None:
            instants.append(clock.now())
            clock.advance(days=1)

        ents.subscriptions.subscribe(acme, "growth", actor="staff")
        ents.overrides.set_feature(acme, "beta", enabled=True, actor="ann", reason="pilot")
        step()
        ents.subscriptions.change_plan(acme, "enterprise", actor="staff")
        ents.subscriptions.change_seats(acme, 12, actor="staff")
        ents.overrides.remove(acme, "feature", "beta", actor="ann", reason="over")
        step()
        ents.subscriptions.cancel(acme, actor="staff")
        step()
        ents.subscriptions.start_trial(acme, "growth", actor="staff", trial_days=3)
        step()
        created = clock.now()
        globex_sub = ents.subscriptions.subscribe(globex, "growth", actor="staff")
        ents.overrides.set_limit(globex, "projects", 40, actor="ann", reason="big")
        step()
        ents.subscriptions.change_seats(globex, 4, actor="staff")
        step()
        clock.advance(days=10)
        expected = {
            (at, owner): (answers(ents.resolve(owner, at)), ents.subscriptions.at(owner, at))
            for at in instants
            for owner in (acme, globex)
        }
        audit = _table("ent_audit_events", "target")
        with store.engine.begin() as connection:
            connection.execute(
                audit.delete().where(
                    audit.c.target.in_(
                        [
                            f"subscription:{globex_sub.id}",
                            "override:organization:globex:limit:projects",
                        ]
                    )
                )
            )
            migrations.downgrade(connection, "0009")
            migrations.upgrade(connection)
        later = Entitlements(store, clock=clock, policy=POLICY)
        for (at, owner), (then, held) in expected.items():
            if owner == acme:
                assert answers(later.resolve(owner, at)) == then, at
                assert later.subscriptions.at(owner, at) == held, at
        # globex's trail is gone: its present state is taken to hold since its creation
        assert later.subscriptions.at(globex, created - timedelta(seconds=1)) is None
        assert later.subscriptions.at(globex, created).seats == 4
        assert later.resolve(globex, created).limit("projects") == 40
        assert later.resolve(globex).limit("projects") == 40
    finally:
        store.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_0019_backfills_contract_due_instants_and_search_postings(kind, tmp_path, server_stores):
    """Upgrading to 0019: contracts out for signature are due at once, others never; each
    subscription row gets the postings the library writes for its values, and a search
    finds the same owners as before the downgrade."""
    import sqlalchemy as sa

    from entitlements import Entitlements, Owner
    from entitlements.adapters.sql import SqlStore
    from entitlements.adapters.sql import tables as t
    from entitlements.adapters.sql.search import INDEXED_BY, postings
    from entitlements.domain.contracts.contract import SignerSpec
    from entitlements.testing.contract import CATALOG

    if kind == "sqlite":
        store = SqlStore.from_url(f"sqlite:///{tmp_path / 'backfill.db'}")
    else:
        server_stores(kind)
        store = SqlStore.from_url(server_url(kind))
    try:
        with store.engine.begin() as connection:
            migrations.downgrade(connection, "base")
            migrations.upgrade(connection)
        ents = Entitlements(store)
        for plan in CATALOG:
            ents.plans.define(plan, actor="staff")
        owners = [
            Owner("organization", f"org-{n}", tenant) for n in range(4) for tenant in (None, "t2")
        ]
        for n, owner in enumerate(owners):
            ents.subscriptions.subscribe(owner, "growth", actor="staff")
            ents.subscriptions.amend(owner, external_id=f"cus_Old{n}", actor="staff")
            ents.subscriptions.amend(owner, external_id=f"cus_New{n}", actor="staff")
        ents.subscriptions.cancel(owners[0], actor="staff")
        ents.subscriptions.subscribe(owners[0], "free", actor="staff")
        sent = ents.contracts.issue(
            owners[1],
            title="MSA",
            body="Terms.",
            actor="staff",
            signers=[SignerSpec("S", "s@x.test")],
        )
        ents.contracts.send(owners[1], sent.id, actor="staff")
        draft = ents.contracts.issue(
            owners[1],
            title="NDA",
            body="Terms.",
            actor="staff",
            signers=[SignerSpec("S", "s@x.test")],
        )
        needles = ["cus_new", "org-1", "OLD", "cus", "new2"]

        def searched() -> dict[tuple[str, str | None], list[Owner]]:
            return {
                (n, tenant): [s.owner for s in ents.subscriptions.search(n, tenant=tenant)]
                for n in needles
                for tenant in (None, "t2")
            }

        before = searched()
        ents.close()
        with store.engine.begin() as connection:
            migrations.downgrade(connection, "0018")
            migrations.upgrade(connection)
        s = t.subscriptions.c
        with store.engine.connect() as c:
            rows = c.execute(sa.select(s.tenant, s.pk, *(s[n] for n in INDEXED_BY))).all()
            expected = postings((r[0], r[1], tuple(r[2:])) for r in rows)
            found = c.execute(sa.select(t.search_grams)).mappings().all()
            due = dict(c.execute(sa.select(t.contracts.c.id, t.contracts.c.next_due_at)).all())
            created = dict(c.execute(sa.select(t.contracts.c.id, t.contracts.c.created_at)).all())
        assert sorted((p["tenant"], p["gram"], p["sub_pk"]) for p in found) == sorted(
            (p["tenant"], p["gram"], p["sub_pk"]) for p in expected
        )
        assert due == {sent.id: created[sent.id], draft.id: None}
        ents = Entitlements(store)
        assert searched() == before
        assert len(before[("cus_new", None)]) == 3
        assert before[("OLD", None)] == []
        ents.close()
    finally:
        if kind == "sqlite":
            store.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_0019_backfills_postings_of_accented_values(kind, tmp_path, server_stores):
    """A value's accented and unaccented trigrams are distinct in Python but one key
    where the gram column compares accents away (MariaDB): the backfill keeps one, as
    the library's writes do, and the search finds the owner after the upgrade."""
    from entitlements import Entitlements, Owner
    from entitlements.adapters.sql import SqlStore
    from entitlements.testing.contract import CATALOG

    if kind == "sqlite":
        store = SqlStore.from_url(f"sqlite:///{tmp_path / 'accents.db'}")
    else:
        server_stores(kind)
        store = SqlStore.from_url(server_url(kind))
    try:
        with store.engine.begin() as connection:
            migrations.downgrade(connection, "base")
            migrations.upgrade(connection)
        ents = Entitlements(store)
        for plan in CATALOG:
            ents.plans.define(plan, actor="staff")
        owner = Owner("organization", "José-Élan")
        ents.subscriptions.subscribe(owner, "growth", actor="staff")
        ents.subscriptions.amend(owner, external_id="cus_Ñandú", actor="staff")
        ents.close()
        with store.engine.begin() as connection:
            migrations.downgrade(connection, "0018")
            migrations.upgrade(connection)
        ents = Entitlements(store)
        assert [s.owner for s in ents.subscriptions.search("josé")] == [owner]
        assert [s.owner for s in ents.subscriptions.search("CUS_")] == [owner]
        ents.close()
    finally:
        if kind == "sqlite":
            store.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_0020_fills_the_status_counts_with_each_owners_most_recent_subscription(
    kind, tmp_path, server_stores
):
    """Upgrading to 0020: the status counts hold each owner's most recent subscription
    by stored status, per tenant: the counts the library's writes had kept."""
    from collections import Counter

    from entitlements import Entitlements, Owner
    from entitlements.adapters.sql import SqlStore
    from entitlements.testing.contract import CATALOG
    from entitlements.web.lists import OwnerLists

    if kind == "sqlite":
        store = SqlStore.from_url(f"sqlite:///{tmp_path / 'counts.db'}")
    else:
        server_stores(kind)
        store = SqlStore.from_url(server_url(kind))
    try:
        with store.engine.begin() as connection:
            migrations.downgrade(connection, "base")
            migrations.upgrade(connection)
        ents = Entitlements(store)
        for plan in CATALOG:
            ents.plans.define(plan, actor="staff")
        owners = [
            Owner("organization", f"o{n}", tenant) for n in range(3) for tenant in (None, "t2")
        ]
        for owner in owners:
            ents.subscriptions.subscribe(owner, "growth", actor="staff")
        ents.subscriptions.cancel(owners[0], actor="staff")
        ents.subscriptions.subscribe(owners[0], "free", actor="staff")
        ents.subscriptions.cancel(owners[1], actor="staff")
        ents.subscriptions.suspend(owners[2], actor="staff")
        kept = OwnerLists(ents).counts("staff")
        assert kept == Counter({"active": 4, "canceled": 1, "suspended": 1})
        with store.engine.begin() as connection:
            migrations.downgrade(connection, "0019")
            migrations.upgrade(connection)
        assert OwnerLists(ents).counts("staff") == kept
        ents.close()
    finally:
        store.engine.dispose()
