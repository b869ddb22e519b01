"""Shared test setup: hypothesis profiles and the stores every contract test runs on.

``default`` keeps a newcomer's ``pytest`` quick; ``ci`` (selected by ``.ci/run`` through
``HYPOTHESIS_PROFILE=ci``) explores far more examples.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

settings.register_profile(
    "default",
    max_examples=40,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# -- stores -----------------------------------------------------------------------------

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from coherence_peers import open_store  # noqa: E402
from entitlements import MemoryStore  # noqa: E402
from entitlements.adapters.sql import (  # noqa: E402
    SqlStore,
    metadata,
    migrations,
)

SERVERS = {
    "postgres": "ENTITLEMENTS_TEST_POSTGRES_URL",
    "mysql": "ENTITLEMENTS_TEST_MYSQL_URL",
    "pgbouncer": "ENTITLEMENTS_TEST_PGBOUNCER_URL",
}
"""``pgbouncer``: PostgreSQL through PgBouncer in transaction mode, in a database of its
own (the store contract and the coherence tests run through it too)."""
STORE_KINDS = ["memory", "sqlite", "postgres", "mysql"]


def server_url(kind: str) -> str:
    url = os.environ.get(SERVERS[kind])
    if not url:
        pytest.skip(f"{SERVERS[kind]} is not set: the {kind} tests need a server (.ci/run sets it)")
    return url


def wipe(store: SqlStore) -> None:
    with store.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(scope="session")
def server_stores():
    """One migrated store per database server for the whole run; tests wipe its rows."""
    opened: dict[str, SqlStore] = {}

    def get(kind: str) -> SqlStore:
        if kind not in opened:
            url = server_url(kind)
            store = (
                open_store(url)
                if kind == "pgbouncer"
                else SqlStore.from_url(url, pool_pre_ping=True)
            )
            with store.engine.begin() as connection:
                migrations.downgrade(connection, "base")
                for table in reversed(metadata.sorted_tables):
                    connection.execute(sa.text(f"DROP TABLE IF EXISTS {table.name}"))
            store.create_schema()
            opened[kind] = store
        return opened[kind]

    yield get
    for store in opened.values():
        store.engine.dispose()


@pytest.fixture
def make_store(tmp_path, server_stores):
    """``make_store(kind)``: a fresh, empty store of that kind (memory, sqlite, postgres, mysql)."""
    made: list[SqlStore] = []

    def make(kind: str):
        if kind == "memory":
            return MemoryStore()
        if kind == "sqlite":
            store = SqlStore.from_url(f"sqlite:///{tmp_path / f'entitlements-{len(made)}.db'}")
            store.create_schema()
        else:
            store = server_stores(kind)
            wipe(store)
        made.append(store)
        return store

    yield make
    for store in made:
        if store.engine.dialect.name == "sqlite":
            store.engine.dispose()


# -- the run's last word on what it did not test ------------------------------------------

SERVER_TESTS = {
    "ENTITLEMENTS_TEST_POSTGRES_URL": ("PostgreSQL", "postgresql+psycopg://postgres@127.0.0.1:5432/DB"),
    "ENTITLEMENTS_TEST_MYSQL_URL": ("MariaDB", "'mysql+pymysql://root@127.0.0.1:3306/DB?charset=utf8mb4'"),
    "ENTITLEMENTS_TEST_REDIS_URL": ("Redis", "redis://127.0.0.1:6379/0"),
}  # fmt: skip


def server_skips(reports) -> dict[str, int]:
    """How many skipped tests waited for each server's URL variable."""
    counts = dict.fromkeys(SERVER_TESTS, 0)
    for report in reports:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        for variable in SERVER_TESTS:
            if f"{variable} is not set" in reason:
                counts[variable] += 1
    return {variable: n for variable, n in counts.items() if n}


def server_skips_line(counts: dict[str, int]) -> str:
    """One line: how many server tests were skipped, and the command that runs them."""
    total = sum(counts.values())
    each = ", ".join(f"{SERVER_TESTS[v][0]} {n}" for v, n in counts.items())
    variables = " ".join(f"{v}={SERVER_TESTS[v][1]}" for v in counts)
    return (
        f"{total} server tests skipped ({each}): run them with `{variables} pytest` "
        "(DB: an empty database), or .ci/run (starts the servers)"
    )


def arranged_skips(reports) -> int:
    """Skipped tests that need servers arranged for them (a pooler, replicas, a primary
    they may restart): only ``.ci/run`` sets those up."""
    found = 0
    for report in reports:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        counted = any(f"{v} is not set" in reason for v in SERVER_TESTS)
        if "ENTITLEMENTS_TEST_" in reason and not counted:
            found += 1
    return found


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    counts = server_skips(skipped)
    if counts:
        terminalreporter.write_line(server_skips_line(counts), yellow=True)
    arranged = arranged_skips(skipped)
    if arranged:
        terminalreporter.write_line(
            f"{arranged} tests of replicas, a pooler and restarts skipped: .ci/run starts "
            "the servers they need",
            yellow=True,
        )
