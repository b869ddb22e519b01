"""A PostgreSQL server restarted under load: real processes consume with idempotency keys
and retry what the library says may be retried; afterwards every accepted consume is
stored exactly once, every error the host saw was a retryable one (or a commit whose
outcome is unknown, repeated by key), and a follower is stale no longer than its bound.

Needs a server of its own that the test may restart: ``ENTITLEMENTS_TEST_RESTARTABLE_URL``
and the command that restarts it, ``ENTITLEMENTS_TEST_RESTART_COMMAND`` (``.ci/run``
makes a throwaway cluster for this).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import shlex
import subprocess
import time
from typing import Any

import pytest

from entitlements import (
    ConnectionLost,
    Entitlements,
    EntitlementsError,
    Limit,
    LimitKind,
    Owner,
    Plan,
)
from entitlements.adapters.sql import SqlStore, metadata

CONSUMERS = 8
UNITS = 100
DEADLINE = 120.0
PACE = 0.03
"""Seconds between a consumer's units once the restart is under way: their last two thirds
take at least two seconds, longer than a fast restart, so the restart always meets work
in flight (a host's steady traffic) and not consumers that have already finished."""


def _restartable() -> tuple[str, list[str]]:
    url = os.environ.get("ENTITLEMENTS_TEST_RESTARTABLE_URL")
    command = os.environ.get("ENTITLEMENTS_TEST_RESTART_COMMAND")
    if not url or not command:
        pytest.skip(
            "ENTITLEMENTS_TEST_RESTARTABLE_URL and ENTITLEMENTS_TEST_RESTART_COMMAND are not "
            "set: the failover tests restart a server of their own (.ci/run makes one)"
        )
    return url, shlex.split(command)


def _consume(url: str, index: int, conn: Any) -> None:
    ents = Entitlements(SqlStore.from_url(url))
    owner = Owner("organization", f"busy-{index}")
    errors: collections.Counter[tuple[str, bool]] = collections.Counter()
    deadline = time.monotonic() + DEADLINE
    conn.send("started")
    for unit in range(UNITS):
        while time.monotonic() < deadline:
            try:
                ents.usage.consume(owner, "calls", 1, key=f"unit-{unit}")
                break
            except EntitlementsError as error:
                errors[(type(error).__name__, error.retryable)] += 1
                time.sleep(0.05)
        if unit == UNITS // 3:
            conn.send("a third")
            conn.poll(60)  # all together from here, as the server goes down
            conn.recv()
        if unit >= UNITS // 3:
            time.sleep(PACE)  # the rest outlasts the restart, however fast a consume is
    ents.close()
    conn.send(dict(errors))


@pytest.fixture
def restartable():
    url, command = _restartable()
    store = SqlStore.from_url(url)
    store.create_schema()
    with store.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    ents = Entitlements(store, max_staleness=1.0)
    ents.plans.define(
        Plan(
            "pro",
            "Pro",
            features={"export": True},
            limits={"calls": Limit(100_000, kind=LimitKind.METERED)},
            status="active",
        ),
        actor="staff",
    )
    for index in range(CONSUMERS):
        ents.subscriptions.subscribe(Owner("organization", f"busy-{index}"), "pro", actor="s")
    yield url, command, ents
    ents.close()
    store.engine.dispose()


def test_a_restart_under_keyed_consumers_loses_and_doubles_nothing(restartable):
    url, command, ents = restartable
    ctx = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for index in range(CONSUMERS):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_consume, args=(url, index, child), daemon=True)
        process.start()
        pipes.append(parent)
        processes.append(process)
    try:
        for pipe in pipes:
            assert pipe.poll(60)
            assert pipe.recv() == "started"
        for pipe in pipes:
            assert pipe.poll(60)
            assert pipe.recv() == "a third"
        for pipe in pipes:
            pipe.send("go")
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        seen: collections.Counter[tuple[str, bool]] = collections.Counter()
        for pipe in pipes:
            assert pipe.poll(DEADLINE + 30)
            seen.update(pipe.recv())
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()

    used = _wait_readable(lambda: [_used(ents, i) for i in range(CONSUMERS)])
    assert used == [UNITS] * CONSUMERS
    # the restart was felt, and only as errors a host may repeat (a commit whose outcome
    # is unknown is repeated by its key)
    assert sum(seen.values()) > 0
    assert {name for name, _ in seen} <= {"ConnectionLost", "Busy"}
    assert all(retryable for name, retryable in seen if name == "Busy")


def _used(ents: Entitlements, index: int) -> int:
    return ents.usage.check(Owner("organization", f"busy-{index}"), "calls").used


def _wait_readable(read: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except ConnectionLost:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _subscribe(url: str, owner_id: str) -> None:
    ents = Entitlements(SqlStore.from_url(url))
    ents.subscriptions.subscribe(Owner("organization", owner_id), "pro", actor="staff")
    ents.close()


def test_after_a_restart_a_follower_is_stale_no_longer_than_its_bound(restartable):
    url, command, ents = restartable
    late = Owner("organization", "late")
    assert ents.allows(late, "export") is False  # cached, the follower running
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_subscribe, args=(url, "late"))
    writer.start()
    writer.join(timeout=60)
    assert writer.exitcode == 0
    written = time.monotonic()
    bound = ents.coherence.max_staleness + ents.coherence.interval
    while not _wait_readable(lambda: ents.allows(late, "export")):
        assert time.monotonic() - written < bound + 2.0, "still stale past the bound"
        time.sleep(0.02)
