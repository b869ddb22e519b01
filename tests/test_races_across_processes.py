"""Writes decide from the database, never from a cache: races between real processes,
each with its own `Entitlements` and its own warm cache."""

from __future__ import annotations

from collections import defaultdict

import pytest

from conftest import server_url
from entitlements import Entitlements, Limit, LimitKind, Plan
from entitlements.adapters.sql import SqlStore
from races import limit_race, owner, run_processes, seat_race

SERVERS = ["postgres", "mysql"]


@pytest.mark.parametrize("kind", SERVERS)
def test_seats_reduced_while_others_assign_never_end_silently_over(make_store, kind):
    make_store(kind)  # a wiped, migrated database
    url = server_url(kind)
    rounds, assigners = 30, 7
    ents = Entitlements(SqlStore.from_url(url))
    seats = Limit(10, kind=LimitKind.SEATS)
    ents.plans.define(Plan("team", "Team", limits={"seats": seats}, status="active"), actor="s")
    for r in range(rounds):
        ents.subscriptions.subscribe(owner(r), "team", actor="staff", seats=5)

    results = run_processes(
        seat_race,
        [("assign", url, w, rounds) for w in range(assigners)] + [("reduce", url, 3, rounds)],
    )

    outcome = {r: kind_ for kind_, r, _ in results if kind_ in ("reduced", "refused")}
    reported = {r: n for kind_, r, n in results if kind_ == "reduced"}
    won: dict[int, int] = defaultdict(int)
    for kind_, r, n in results:
        if kind_ == "assigned":
            won[r] += n
    assert len(outcome) == rounds
    cold = Entitlements(SqlStore.from_url(url))
    for r in range(rounds):
        members = len(cold.seats.list(owner(r)))
        assert members == won[r], "every accepted assignment is stored, nothing more"
        assert cold.usage.counter(owner(r), "seats").used == members
        purchased = cold.subscriptions.get(owner(r)).seats
        if outcome[r] == "refused":
            assert purchased == 5
            assert members <= 5
        else:
            assert purchased == 3
            assert members <= 3 or reported[r] > 0, f"round {r}: {members} members on 3 seats"
    assert set(outcome.values()) <= {"reduced", "refused"}


@pytest.mark.parametrize("kind", SERVERS)
def test_a_hard_limit_lowered_while_others_consume_stores_nothing_beyond_it(make_store, kind):
    make_store(kind)
    url = server_url(kind)
    rounds, consumers = 6, 4
    ents = Entitlements(SqlStore.from_url(url))
    calls = Limit(1_000_000, kind=LimitKind.METERED)
    ents.plans.define(
        Plan(
            "metered", "Metered", features={"api": True}, limits={"calls": calls}, status="active"
        ),
        actor="s",
    )
    for r in range(rounds):
        ents.subscriptions.subscribe(owner(r), "metered", actor="staff")

    results = run_processes(
        limit_race, [("consume", url, rounds)] * consumers + [("lower", url, rounds)]
    )

    assert not [x for x in results if x[0] == "error"], results
    lowered = {r: used for kind_, r, used in results if kind_ == "lowered"}
    accepted: dict[int, int] = defaultdict(int)
    for kind_, r, n in results:
        if kind_ == "consumed":
            accepted[r] += n
    assert len(lowered) == rounds
    cold = Entitlements(SqlStore.from_url(url))
    for r in range(rounds):
        final = cold.usage.total(owner(r), "calls")
        assert final == accepted[r] * 10, "every accepted consumption is stored, nothing more"
        assert final == lowered[r], (
            f"round {r}: {final - lowered[r]} units stored after the limit was lowered to 100"
        )
        assert final >= 100
