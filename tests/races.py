"""Work run in separate processes (spawned, each with its own `Entitlements`) by the
multi-process tests: races that threads in one process, sharing one cache, would hide."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from entitlements import (
    Entitlements,
    EntitlementsError,
    LimitExceeded,
    OverQuotaRefused,
    Owner,
)
from entitlements.adapters.sql import SqlStore

SPAWN = multiprocessing.get_context("spawn")


def owner(round_: int) -> Owner:
    return Owner("organization", f"acme-{round_}")


def run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    """Start one spawned process per argument tuple (each gets a shared barrier and a
    result queue after its own arguments), wait for all, return every result put."""
    barrier = SPAWN.Barrier(len(args))
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*a, barrier, results)) for a in args]
    for p in procs:
        p.start()
    got = []
    for p in procs:
        p.join(timeout=300)
    while not results.empty():
        got.append(results.get(timeout=5))
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    assert not failed, f"worker processes failed: exit codes {failed}; results {got}"
    return got


def _open(url: str) -> Entitlements:
    return Entitlements(SqlStore.from_url(url))


def assign_seats(url: str, worker: int, rounds: int, barrier: Any, results: Any) -> None:
    ents = _open(url)
    for r in range(rounds):
        barrier.wait()
        ents.seats.list(owner(r))  # warm the cache: the write must not trust it
        won = 0
        for i in range(2):
            try:
                ents.seats.assign(owner(r), f"m{worker}-{i}", actor="staff")
                won += 1
            except LimitExceeded:
                pass
        results.put(("assigned", r, won))
    ents.close()


def reduce_seats(url: str, to: int, rounds: int, barrier: Any, results: Any) -> None:
    ents = _open(url)
    for r in range(rounds):
        barrier.wait()
        try:
            change = ents.subscriptions.change_seats(owner(r), to, actor="staff")
            results.put(("reduced", r, len(change.over_quota)))
        except OverQuotaRefused:
            results.put(("refused", r, 0))
    ents.close()


def consume_until_refused(url: str, rounds: int, barrier: Any, results: Any) -> None:
    ents = _open(url)
    for r in range(rounds):
        barrier.wait()
        accepted = refused = 0
        while refused < 20:
            ents.allows(owner(r), "api")  # keep a warm snapshot around
            try:
                ents.usage.consume(owner(r), "calls", 10)
                accepted += 1
            except LimitExceeded:
                refused += 1
        results.put(("consumed", r, accepted))
    ents.close()


def lower_limit(url: str, rounds: int, barrier: Any, results: Any) -> None:
    ents = _open(url)
    for r in range(rounds):
        barrier.wait()
        target = 100 + 150 * r  # lowered at a different point each round
        while ents.usage.total(owner(r), "calls") < target:
            pass
        try:
            ents.overrides.set_limit(owner(r), "calls", 100, actor="staff", reason="abuse")
        except EntitlementsError as error:  # pragma: no cover - reported to the test
            results.put(("error", r, str(error)))
            continue
        read_back = Entitlements(ents.store).usage.total(owner(r), "calls")
        results.put(("lowered", r, read_back))
    ents.close()


def seat_race(role: str, url: str, n: int, rounds: int, barrier: Any, results: Any) -> None:
    if role == "assign":
        assign_seats(url, n, rounds, barrier, results)
    else:
        reduce_seats(url, n, rounds, barrier, results)


def limit_race(role: str, url: str, rounds: int, barrier: Any, results: Any) -> None:
    if role == "consume":
        consume_until_refused(url, rounds, barrier, results)
    else:
        lower_limit(url, rounds, barrier, results)
