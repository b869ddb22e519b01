"""The ports are the one list of seams: every protocol the library is wired through is
declared in `entitlements.ports`, optional fast paths are declared there (not probed
with ``getattr``), and the facade is handed port objects instead of importing
adapters."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from typing import Protocol

import pytest

import entitlements
from entitlements import Entitlements, ManualClock, MemoryStore, Owner, Plan, ports
from entitlements.adapters.sql import SqlStore
from entitlements.errors import InvalidInput


def _modules() -> list[str]:
    found = []
    for info in pkgutil.walk_packages(entitlements.__path__, "entitlements."):
        if info.name.endswith(("__main__", ".migrations.env")) or ".versions." in info.name:
            continue  # run as programs (the CLI, Alembic's environment), not imported
        try:
            importlib.import_module(info.name)
        except ImportError:  # an extra that is not installed here
            continue
        found.append(info.name)
    return found


def test_every_protocol_is_declared_in_ports() -> None:
    elsewhere = [
        f"{name}.{cls.__name__}"
        for name in _modules()
        for cls in vars(sys.modules[name]).values()
        if inspect.isclass(cls)
        and cls.__module__ == name != "entitlements.ports"
        and Protocol in cls.__mro__[1:]
        and getattr(cls, "_is_protocol", False)
    ]
    assert elsewhere == []


def test_protocols_moved_to_ports_still_import_from_where_they_were() -> None:
    from entitlements.service.authorization import Authorizer
    from entitlements.service.coherence import ChangeHint
    from entitlements.telemetry import Telemetry

    assert (Authorizer, ChangeHint, Telemetry) == (
        ports.Authorizer,
        ports.ChangeHint,
        ports.Telemetry,
    )


def test_fast_paths_are_declared_ports(tmp_path) -> None:
    sql = SqlStore.from_url(f"sqlite:///{tmp_path / 'e.db'}")
    assert isinstance(MemoryStore(), ports.InlineConsumption)
    assert not isinstance(sql, ports.InlineConsumption)
    assert isinstance(ManualClock(), ports.TimestampClock)
    sql.engine.dispose()


def test_the_facade_imports_no_adapter_it_is_not_given() -> None:
    code = (
        "import sys\n"
        "from entitlements import Entitlements, MemoryStore\n"
        "Entitlements(MemoryStore()).close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('entitlements.adapters')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "redis_hints" not in out
    assert "entitlements.adapters.memory" in out


class Channel:
    """A change channel of the host's own (a message bus, say)."""

    def __init__(self) -> None:
        self.announced: list[int] = []

    def announce(self, revision: int) -> None:
        self.announced.append(revision)

    def subscribe(self) -> ports.ChangeHint:
        raise NotImplementedError("not followed in this test")


def test_any_change_channel_hears_each_commit() -> None:
    channel = Channel()
    ents = Entitlements(MemoryStore(), redis=channel, max_staleness=0)
    ents.plans.define(Plan("free", "Free", status="active"), actor="staff")
    ents.subscriptions.subscribe(Owner("organization", "acme"), "free", actor="staff")
    assert len(channel.announced) == 2
    assert channel.announced == sorted(channel.announced)
    assert channel.announced[-1] == ents.last_revision
    ents.close()


@pytest.mark.parametrize("bad", [42, object(), b"redis://localhost"])
def test_a_channel_that_is_not_one_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInput, match="redis"):
        Entitlements(MemoryStore(), redis=bad)  # type: ignore[arg-type]


def test_a_sql_store_says_its_schema_revision(tmp_path) -> None:
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'e.db'}")
    assert store.schema_revision() is None
    store.create_schema()
    assert store.schema_revision() == store.schema_head
    store.engine.dispose()
