"""The processes of the scheduled-change tests, in a module of their own so that a
spawned child imports only this (and the library). Each child opens its own
`Entitlements` on the database, with a clock of its own the parent sets over a pipe."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from entitlements import ChangePending, Entitlements, InvalidInput, ManualClock, Owner
from entitlements.adapters.sql import SqlStore

ACME = Owner("organization", "acme")


def observer(url: str, start: datetime, conn: Any) -> None:
    """Answers ``("at", instant)`` with what a warm check and a cold one say then."""
    clock = ManualClock(start)
    store = SqlStore.from_url(url)
    warm = Entitlements(store, clock=clock)
    warm.allows(ACME, "export")
    conn.send("ready")
    while True:
        command, argument = conn.recv()
        if command == "stop":
            warm.close()
            return
        clock.set(argument)
        cold = Entitlements(SqlStore.from_url(url), clock=clock)
        conn.send(
            (
                warm.allows(ACME, "export"),
                cold.allows(ACME, "export"),
                warm.subscriptions.get(ACME).plan_key,
            )
        )
        cold.close()


def scheduler(url: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    """Schedules (never replacing) and cancels on one subscription, as fast as it can."""
    ents = Entitlements(SqlStore.from_url(url))
    barrier.wait()
    scheduled = canceled = 0
    for i in range(rounds):
        try:
            if (worker + i) % 2:
                ents.subscriptions.schedule_change(ACME, seats=worker + 1, actor=f"w{worker}")
                scheduled += 1
            else:
                ents.subscriptions.cancel_pending_change(ACME, actor=f"w{worker}")
                canceled += 1
        except (ChangePending, InvalidInput):
            pass
    results.put((worker, scheduled, canceled))
    ents.close()


def sweeper(url: str, at: datetime, barrier: Any, results: Any) -> None:
    """One sweep at ``at``; reports the pending changes it applied."""
    ents = Entitlements(SqlStore.from_url(url), clock=ManualClock(at))
    barrier.wait()
    report = ents.process_due()
    applied = [c.before.id for c in report.changes if c.request is not None]
    results.put((applied, len(report.failures)))
    ents.close()
