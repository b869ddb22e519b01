"""The shipped migrations build exactly the schema the metadata declares, and go back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conftest import server_url
from entitlements.adapters.sql import metadata, migrations


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
