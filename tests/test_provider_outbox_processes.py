"""Sweeps in several processes send the same pending provider commands: each command is
recorded as delivered exactly once, and every call carried that command's one
idempotency key (so the provider, deduplicating by key, acts once)."""

from __future__ import annotations

import multiprocessing
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import server_url
from entitlements import Actor, ActorKind, Entitlements, ManualClock, Owner, Plan, Price
from entitlements.adapters.sql import SqlStore
from entitlements.domain.billing import Checkout
from entitlements.testing.fakes import FakePaymentProvider

PROCESSES = 6
OWNERS = 12
START = datetime(2026, 5, 1, 12, tzinfo=UTC)
GROWTH = Plan("growth", "Growth", price=Price(Decimal("29"), "USD"), status="active")


class KeyLog:
    """A provider that writes each call's idempotency key to a shared file and answers
    deterministically by key, as a provider replaying a stored answer does."""

    def __init__(self, path: str) -> None:
        self.path = path

    def start_checkout(self, owner, plan, *, seats, reference):
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{reference}\n".encode())
        finally:
            os.close(fd)
        return Checkout(f"cs_{reference}", f"https://pay.example/{reference}", owner, plan.key)

    def change_plan(self, external_id, plan, *, seats, idempotency_key):
        raise NotImplementedError

    def cancel(self, external_id, *, at_period_end, idempotency_key):
        raise NotImplementedError

    def fetch(self, external_id):
        return None


def sweep(url: str, log: str, barrier, now: datetime) -> None:
    store = SqlStore.from_url(url)
    ents = Entitlements(store, payment_provider=KeyLog(log))
    try:
        barrier.wait(timeout=60)
        ents.process_due(now)
    finally:
        ents.close()
        store.engine.dispose()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_concurrent_sweeps_deliver_each_command_once(make_store, kind, tmp_path: Path):
    url = server_url(kind)
    store = make_store(kind)
    clock = ManualClock(START)
    down = FakePaymentProvider(clock)
    down.unavailable = True
    ents = Entitlements(store, clock=clock, payment_provider=down)
    ents.plans.define(GROWTH, actor="staff")
    owners = [Owner("workspace", f"w{i}") for i in range(OWNERS)]
    keys = {
        ents.billing.assign_plan(
            o, "growth", actor=Actor(f"m{i}", ActorKind.MEMBER)
        ).command.idempotency_key
        for i, o in enumerate(owners)
    }
    log = tmp_path / "calls.log"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    workers = [
        context.Process(target=sweep, args=(url, str(log), barrier, START + timedelta(hours=1)))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    calls = log.read_text().split()
    assert set(calls) == keys, "every call carried its command's key, and every command went"
    for owner in owners:
        assert not ents.billing.state(owner).pending_at_provider
        sent = [
            e for e in ents.audit.for_owner(owner) if e.action == "billing.provider_command_sent"
        ]
        assert len(sent) == 1, f"{owner}: delivered {len(sent)} times"
    with store.unit_of_work(None, read_only=True) as uow:
        commands = [uow.provider.open_commands(o) for o in owners]
    assert commands == [[]] * OWNERS
    ents.close()
