"""Opening the database from the command line without ever creating one by mistake.

A mistyped ``--db sqlite:///entitlments.db`` must not leave an empty file behind and
answer "has no subscription": every command but ``db upgrade`` first checks that the
schema is there, at this version — for SQLite, that the file exists before connecting
(connecting would create it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from entitlements.errors import StorageError

if TYPE_CHECKING:
    from entitlements.adapters.sql import SqlStore

__all__ = ["NoSchema", "check_schema", "open_store"]


class NoSchema(StorageError):
    """No schema at the URL, or one at another revision than this version ships."""


def _how(url: str) -> str:
    return f"create it with: entitlements --db {url} db upgrade"


def _sqlite_file(store: SqlStore) -> Path | None:
    engine = store.engine
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if database in (None, "", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def open_store(url: str, *, create: bool = False) -> SqlStore:
    """The store at ``url``; unless ``create``, only if its schema is at this version's."""
    from entitlements.adapters.sql import SqlStore

    store = SqlStore.from_url(url)
    if create:
        return store
    shown = store.engine.url.render_as_string(hide_password=True)
    path = _sqlite_file(store)
    if path is not None and not path.is_file():
        raise NoSchema(f"no entitlements schema at {shown}: {path} does not exist; {_how(shown)}")
    if store.engine.dialect.name == "sqlite" and path is None:
        raise NoSchema(f"no entitlements schema in an in-memory database ({shown})")
    check_schema(store, shown)
    return store


def check_schema(store: SqlStore, shown: str) -> str:
    revision, head = store.schema_revision(), store.schema_head
    if revision is None:
        raise NoSchema(f"no entitlements schema at {shown}; {_how(shown)}")
    if revision < head:
        raise NoSchema(
            f"the schema at {shown} is at revision {revision}, this version needs {head}; "
            f"upgrade it with: entitlements --db {shown} db upgrade"
        )
    if revision > head:
        raise NoSchema(
            f"the schema at {shown} is at revision {revision}, newer than this version "
            f"of entitlements ({head}); upgrade the entitlements package"
        )
    return revision
