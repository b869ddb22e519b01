"""Eight processes finalize the same owners' invoices at once, each its own
`Entitlements`: one invoice per owner and period, and the numbers form a sequence with
no gap and no duplicate (the counter row's lock orders the finalizers; a loser's number
goes back with its rollback)."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest

from conftest import server_url
from entitlements import Entitlements, ManualClock, Owner, Plan, Price
from entitlements.adapters.sql import SqlStore

PROCESSES = 8
OWNERS = 10
START = datetime(2026, 5, 1, 12, tzinfo=UTC)
END = START + timedelta(days=31)
PRO = Plan("pro", "Pro", price=Price("29.00", "USD"), status="active")


def finalize_all(url: str, barrier, offset: int) -> None:
    store = SqlStore.from_url(url)
    ents = Entitlements(store, clock=ManualClock(END))
    try:
        barrier.wait(timeout=60)
        for i in range(OWNERS):  # each process starts at another owner
            owner = Owner("organization", f"o{(i + offset) % OWNERS}")
            ents.invoices.finalize(owner, actor="billing-job")
    finally:
        ents.close()
        store.engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_concurrent_finalizers_make_one_invoice_per_owner_and_no_gaps(make_store, kind, tmp_path):
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'invoices.db'}"
        store = SqlStore.from_url(url)
        store.create_schema()
    else:
        url = server_url(kind)
        store = make_store(kind)
    clock = ManualClock(START)
    ents = Entitlements(store, clock=clock)
    ents.plans.define(PRO, actor="staff")
    owners = [Owner("organization", f"o{i}") for i in range(OWNERS)]
    for owner in owners:
        ents.subscriptions.subscribe(owner, "pro", actor="staff")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    workers = [
        context.Process(target=finalize_all, args=(url, barrier, n)) for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    invoices = [ents.invoices.list(owner) for owner in owners]
    assert [len(found) for found in invoices] == [1] * OWNERS
    numbers = sorted(found[0].number for found in invoices)
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, OWNERS + 1)]
    ents.close()
