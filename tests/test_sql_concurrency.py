"""Concurrent writers on the SQL stores: no lost update, one live subscription per owner."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import attrs
import pytest

from entitlements import (
    Entitlements,
    Limit,
    LimitExceeded,
    LimitKind,
    Owner,
    Plan,
    StaleWrite,
    SubscriptionExists,
)

THREADS = 8
ROUNDS = 10
ACME = Owner("organization", "acme")


@pytest.fixture(params=["postgres", "mysql", "sqlite"])
def ents(request, make_store):
    store = make_store(request.param)
    app = Entitlements(store)
    app.plans.define(Plan("team", "Team", status="active"), actor="staff")
    return app


def test_concurrent_read_modify_writes_lose_no_update(ents):
    ents.subscriptions.subscribe(ACME, "team", actor="staff", seats=0)
    start = threading.Barrier(THREADS)
    retries = []

    def add_seats() -> None:
        start.wait()
        for _ in range(ROUNDS):
            while True:
                current = ents.subscriptions.get(ACME)
                try:
                    ents.subscriptions.change_seats(
                        ACME,
                        (current.seats or 0) + 1,
                        actor="staff",
                        expected_revision=current.revision,
                    )
                    break
                except StaleWrite:
                    retries.append(1)

    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(add_seats) for _ in range(THREADS)]:
            future.result()
    assert ents.subscriptions.get(ACME).seats == THREADS * ROUNDS
    assert len(ents.audit.for_owner(ACME)) == 1 + THREADS * ROUNDS


def test_stale_writes_are_detected_not_silently_applied(ents):
    ents.subscriptions.subscribe(ACME, "team", actor="staff", seats=1)
    store = ents.store
    first = store.unit_of_work(None)
    second = store.unit_of_work(None)
    with first:
        seen = first.subscriptions.current(ACME)
    with second:
        second.subscriptions.update(_with_seats(seen, 5))
        second.commit()
    with first, pytest.raises(StaleWrite):
        first.subscriptions.update(_with_seats(seen, 7))
    assert ents.subscriptions.get(ACME).seats == 5


def _with_seats(sub, seats):
    return attrs.evolve(sub, seats=seats)


def test_concurrent_trials_for_one_owner_have_exactly_one_winner(ents):
    start = threading.Barrier(THREADS)

    def try_trial() -> str:
        start.wait()
        try:
            ents.subscriptions.start_trial(ACME, "team", actor="staff")
            return "won"
        except SubscriptionExists:
            return "refused"

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = [f.result() for f in [pool.submit(try_trial) for _ in range(THREADS)]]
    assert outcomes.count("won") == 1
    assert outcomes.count("refused") == THREADS - 1
    assert len(ents.subscriptions.history(ACME)) == 1


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_concurrent_consumers_never_pass_a_hard_limit_and_lose_no_increment(make_store, kind):
    store = make_store(kind)
    app = Entitlements(store)
    app.plans.define(
        Plan(
            "metered",
            "Metered",
            limits={"calls": Limit(50, kind=LimitKind.METERED)},
            status="active",
        ),
        actor="s",
    )
    app.subscriptions.subscribe(ACME, "metered", actor="staff")
    app.usage.consume(ACME, "calls", 30)
    start = threading.Barrier(THREADS)

    def consume_all() -> int:
        start.wait()
        accepted = 0
        for i in range(10):
            try:
                app.usage.consume(ACME, "calls", 1, key=f"{threading.get_ident()}-{i}")
                accepted += 1
            except LimitExceeded:
                pass
        return accepted

    with ThreadPoolExecutor(THREADS) as pool:
        accepted = sum(f.result() for f in [pool.submit(consume_all) for _ in range(THREADS)])
    assert accepted == 20
    assert app.usage.total(ACME, "calls") == 50
    assert len(app.usage.records(ACME, "calls")) == 21


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_concurrent_seat_assignments_never_exceed_purchased_seats(make_store, kind):
    store = make_store(kind)
    app = Entitlements(store)
    app.plans.define(
        Plan("team", "Team", limits={"seats": Limit(5, kind=LimitKind.SEATS)}, status="active"),
        actor="s",
    )
    app.subscriptions.subscribe(ACME, "team", actor="staff")
    start = threading.Barrier(THREADS)

    def assign(n: int) -> int:
        start.wait()
        won = 0
        for i in range(3):
            try:
                app.seats.assign(ACME, f"m{n}-{i}", actor="staff")
                won += 1
            except LimitExceeded:
                pass
        return won

    with ThreadPoolExecutor(THREADS) as pool:
        won = sum(f.result() for f in [pool.submit(assign, n) for n in range(THREADS)])
    assert won == 5
    assert len(app.seats.list(ACME)) == 5
    assert app.usage.counter(ACME, "seats").used == 5
