"""Notifications across real processes (issue 25), on PostgreSQL and MariaDB: consumers
racing across one owner's thresholds write one notification per threshold; deliverers
at once — one killed mid-batch — hand every notification over, never one to two handlers
at once, and the killed one's again with the same ids; sweeps at once write each
time-based notification once."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import server_url
from entitlements import (
    Entitlements,
    Limit,
    LimitExceeded,
    LimitKind,
    ManualClock,
    NotificationKind,
    NotificationSettings,
    Owner,
    Plan,
)
from entitlements.adapters.sql import SqlStore

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
ACME = Owner("organization", "acme")
CAPPED = Plan(
    "capped",
    "Capped",
    limits={"api": Limit(400, kind=LimitKind.METERED, alerts=(80, 100))},
    status="active",
    trial_days=5,
)


def _log(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def consume(url: str, barrier, attempts: int) -> None:
    store = SqlStore.from_url(url)
    ents = Entitlements(store, clock=ManualClock(START + timedelta(minutes=1)))
    try:
        barrier.wait(timeout=60)
        for _ in range(attempts):
            with contextlib.suppress(LimitExceeded):
                ents.usage.consume(ACME, "api", 1)
    finally:
        ents.close()
        store.engine.dispose()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_consumers_racing_across_thresholds_write_one_notification_each(kind, make_store):
    url = server_url(kind)
    store = make_store(kind)
    ents = Entitlements(store, clock=ManualClock(START))
    ents.plans.define(CAPPED, actor="staff")
    ents.subscriptions.subscribe(ACME, "capped", actor="staff")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(8)
    workers = [context.Process(target=consume, args=(url, barrier, 60)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * 8
    assert ents.usage.total(ACME, "api") == 400
    found = sorted(
        ((n.kind, n.facts["threshold"]) for n in ents.notifications.list(ACME)),
        key=lambda pair: pair[1],
    )
    assert found == [
        (NotificationKind.USAGE_THRESHOLD, 80),
        (NotificationKind.LIMIT_REACHED, 100),
    ]
    ents.close()


# -- delivery -----------------------------------------------------------------------------

OWNERS = 20
EACH = 6


def _wait_for_victim(log: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(log) and Path(log).read_text().strip():
            return
        time.sleep(0.05)


def deliver(url: str, log: str, barrier, victim: bool, total: int) -> None:
    store = SqlStore.from_url(url)
    ents = Entitlements(store)
    me = os.getpid()
    handled = 0

    def handler(notification) -> None:
        nonlocal handled
        _log(log, f"start {notification.id} {me}")
        handled += 1
        if victim and handled == 5:
            while True:  # hangs mid-batch until the test kills it
                time.sleep(1)
        _log(log, f"end {notification.id} {me}")

    try:
        barrier.wait(timeout=60)
        if not victim:  # the victim claims first (so that it surely dies holding a batch)
            _wait_for_victim(log, 60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ents.notifications.deliver(handler, batch=10, lease=timedelta(seconds=3))
            delivered = [
                n for n in ents.notifications.list(limit=total) if n.delivered_at is not None
            ]
            if len(delivered) == total:
                return
            time.sleep(0.2)
    finally:
        ents.close()
        store.engine.dispose()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_deliverers_at_once_one_killed_deliver_everything_never_twice_at_once(
    kind, make_store, tmp_path: Path
):
    url = server_url(kind)
    store = make_store(kind)
    clock = ManualClock(START)
    ents = Entitlements(store, clock=clock)
    plan = Plan(
        "many",
        "Many",
        limits={"api": Limit(60, kind=LimitKind.METERED, alerts=range(10, 70, 10))},
        status="active",
    )
    ents.plans.define(plan, actor="staff")
    owners = [Owner("organization", f"o{i:02}") for i in range(OWNERS)]
    for who in owners:
        ents.subscriptions.subscribe(who, "many", actor="staff")
        for _ in range(EACH):
            ents.usage.consume(who, "api", 10)
    total = OWNERS * EACH
    written = {n.id: n for n in ents.notifications.list(limit=total)}
    assert len(written) == total
    log = tmp_path / "handled.log"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=deliver, args=(url, str(log), barrier, i == 0, total))
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    victim = workers[0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for the victim to hang inside a handler
        lines = log.read_text().splitlines() if log.exists() else []
        mine = [
            line for line in lines if line.startswith("start") and line.endswith(f" {victim.pid}")
        ]
        if len(mine) >= 5:
            break
        time.sleep(0.1)
    victim.terminate()
    victim.join(timeout=30)
    _log(str(log), "killed")
    for worker in workers[1:]:
        worker.join(timeout=240)
    assert [w.exitcode for w in workers[1:]] == [0] * 3

    lines = [line.split() for line in log.read_text().splitlines()]
    killed_at = next(i for i, line in enumerate(lines) if line == ["killed"])
    open_by: dict[str, set[str]] = {}
    ended: dict[str, int] = {}
    for index, line in enumerate(lines):
        if line == ["killed"]:
            continue
        what, nid, pid = line
        holders = open_by.setdefault(nid, set())
        if what == "start":
            stale = {p for p in holders if p == str(victim.pid)} if index > killed_at else set()
            assert not holders - stale, f"{nid} handed to {holders | {pid}} at once"
            holders.add(pid)
        else:
            holders.discard(pid)
            ended.setdefault(nid, index)
    assert set(ended) == set(written), "every notification was handed over and taken"
    victim_pid = str(victim.pid)
    ended_by_victim = {line[1] for line in lines if line[0] == "end" and line[2] == victim_pid}
    hung = [
        line[1]
        for line in lines
        if line[0] == "start" and line[2] == victim_pid and line[1] not in ended_by_victim
    ]
    assert hung, "the victim died holding a notification"
    for nid in hung:
        assert nid in ended, "the killed one's notification was delivered again, same id"
    # each owner's notifications were taken in the order written
    for who in owners:
        mine = [n for n in written.values() if n.owner == who]
        by_threshold = sorted(mine, key=lambda n: n.facts["threshold"])
        assert sorted(mine, key=lambda n: ended[n.id]) == by_threshold
    final = ents.notifications.list(limit=total)
    assert all(n.delivered_at is not None for n in final)
    ents.close()


# -- the sweep -------------------------------------------------------------------------


def sweep(url: str, barrier, now: datetime) -> None:
    store = SqlStore.from_url(url)
    ents = Entitlements(store, notification_settings=NotificationSettings((3, 1)))
    try:
        barrier.wait(timeout=60)
        ents.process_due(now)
    finally:
        ents.close()
        store.engine.dispose()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_sweeps_at_once_write_each_time_based_notification_once(kind, make_store):
    url = server_url(kind)
    store = make_store(kind)
    ents = Entitlements(store, clock=ManualClock(START))
    ents.plans.define(CAPPED, actor="staff")
    owners = [Owner("organization", f"t{i}") for i in range(10)]
    for who in owners:
        ents.subscriptions.start_trial(who, "capped", actor="staff")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(8)
    at = START + timedelta(days=4, hours=12)  # both lead times reached, the trial still on
    workers = [context.Process(target=sweep, args=(url, barrier, at)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * 8
    for who in owners:
        days = sorted(n.facts["days"] for n in ents.notifications.list(who))
        assert days == [1, 3]
    ents.close()
