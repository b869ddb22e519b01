"""The memory store's outbox keeps its own records apart from what it hands out (a claim
takes a notification where it lies, a delivery is a mark beside it): any sequence of
adds, claims, deliveries, releases, failed tries, retries and purges — committed, rolled
back or undone by a savepoint — leaves it answering exactly as a SQL store does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from entitlements import NotificationKind, Owner
from entitlements.domain.notification import MAX_ATTEMPTS, Delivery, Notification, after_failure

START = datetime(2026, 3, 1, 12, tzinfo=UTC)
WORKERS = ("w1", "w2")

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 2)),
        # a SQL claim takes up to its limit among the first due rows, the memory one walks
        # on past an owner that must wait: the same whenever the limit takes every row
        st.tuples(st.just("claim"), st.sampled_from(WORKERS), st.just(100)),
        st.tuples(st.just("delivered"), st.sampled_from(WORKERS), st.integers(0, 8)),
        st.tuples(st.just("release"), st.sampled_from(WORKERS), st.integers(0, 8)),
        st.tuples(st.just("fail"), st.sampled_from(WORKERS), st.integers(0, 8)),
        st.tuples(st.just("park"), st.sampled_from(WORKERS), st.integers(0, 8)),
        st.tuples(st.just("retry"), st.just(""), st.integers(0, 8)),
        st.tuples(st.just("purge"), st.just(""), st.integers(0, 3)),
        st.tuples(st.just("advance"), st.just(""), st.sampled_from([1, 2, 90])),
    ),
    min_size=3,
    max_size=30,
)
ENDINGS = st.lists(st.sampled_from(["commit", "rollback", "savepoint"]), min_size=30, max_size=30)


_CLAIM = [("claim", "w1", 100)]


class Undone(Exception):
    pass


def _apply(uow, op, arg, n, tenant, now):
    """One operation on the outbox; what it answered."""
    outbox = uow.notifications
    known = [f"{tenant}-{o}-{k}" for k in range(3) for o in range(3)]
    if op == "add":
        who = Owner("organization", f"o{arg}", tenant)
        return outbox.add(
            Notification(
                id=f"{tenant}-{arg}-{n}",
                owner=who,
                kind=NotificationKind.USAGE_THRESHOLD,
                key=f"k{n}",
                facts={"n": n},
                about=now,
                created_at=now,
            )
        )
    if op == "claim":
        return [x.id for x in outbox.claim(arg, now, now + timedelta(minutes=1), n)]
    if op == "delivered":
        return outbox.delivered(known[n:] + known[:n], arg, now)
    if op == "release":
        return outbox.release(known[n : n + 3], arg)
    if op in ("fail", "park", "retry"):
        # mostly one the worker holds (or, for a retry, one parked), else any
        chosen = [
            x.id
            for x in outbox.listed(limit=1000)
            if (x.claimed_by == arg if op != "retry" else x.delivery is Delivery.FAILED)
        ]
        try:
            current = outbox.get(chosen[n % len(chosen)] if chosen and n < 6 else known[n])
        except LookupError:
            return "missing"
        if op == "park":  # its last try
            current = attrs.evolve(current, attempts=MAX_ATTEMPTS - 1)
        if op in ("fail", "park"):
            return outbox.update(after_failure(current, now, "boom"), arg)
        if current.delivery is not Delivery.FAILED:
            return "not failed"
        again = attrs.evolve(current, attempts=0, next_attempt_at=None, failed_at=None)
        return outbox.update(again, None)  # as staff's retry
    if op == "purge":
        return outbox.purge(now - timedelta(minutes=n), 2)
    raise AssertionError(op)


def _state(store, tenant, now):
    """Every notification as read, and what a claim a day later would take (in order:
    the pending index), in a unit of work rolled back."""
    with store.unit_of_work(tenant) as uow:
        listed = uow.notifications.listed(limit=1000)
        later = now + timedelta(days=1)
        probe = uow.notifications.claim("probe", later, later + timedelta(minutes=1), 100)
        return [attrs.asdict(n, recurse=False) for n in listed], [n.id for n in probe]


def _run(store, tenant, ops, endings):
    now = START
    answers = []
    with store.unit_of_work(tenant) as uow:  # something to work on from the start
        for who, key in ((0, 0), (1, 0), (0, 1), (2, 0), (0, 2), (1, 1)):
            assert _apply(uow, "add", who, key, tenant, now)
        uow.commit()
    for (op, arg, n), ending in zip(ops, endings, strict=False):
        if op == "advance":
            now += timedelta(minutes=n)
            continue
        with store.unit_of_work(tenant) as uow:
            if ending == "savepoint":
                try:
                    with uow.savepoint():
                        _apply(uow, op, arg, n, tenant, now)
                        raise Undone
                except Undone:
                    pass
                uow.commit()
            else:
                answers.append(_apply(uow, op, arg, n, tenant, now))
                if ending == "commit":
                    uow.commit()
        answers.append(_state(store, tenant, now))
    return answers


def test_the_memory_outbox_answers_as_a_sql_one_whatever_is_committed_or_undone(make_store):
    memory, sqlite = make_store("memory"), make_store("sqlite")

    @settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(OPS, ENDINGS)
    @example([*_CLAIM, ("park", "w1", 5), ("retry", "", 0)], ["commit"] * 30)
    @example([*_CLAIM, ("park", "w1", 5), ("retry", "", 0)], ["commit", "rollback"] * 15)
    @example([*_CLAIM, ("park", "w1", 5), ("fail", "w1", 1)], ["commit", "rollback"] * 15)
    @example([*_CLAIM, ("delivered", "w1", 0), ("fail", "w1", 0)], ["commit"] * 30)
    @example([*_CLAIM, ("delivered", "w1", 0)], ["commit", "savepoint"] * 15)
    @example([*_CLAIM, ("advance", "", 2), *_CLAIM], ["commit", "rollback"] * 15)
    def check(ops, endings):
        tenant = uuid.uuid4().hex[:12]
        assert _run(memory, tenant, ops, endings) == _run(sqlite, tenant, ops, endings)

    check()


def test_a_claim_rolled_back_leaves_what_it_handed_out_as_handed_out():
    from entitlements import MemoryStore

    store = MemoryStore()
    with store.unit_of_work(None) as uow:
        _apply(uow, "add", 0, 0, None, START)
        uow.commit()
    with store.unit_of_work(None) as uow:
        (held,) = uow.notifications.claim("w1", START, START + timedelta(minutes=1), 5)
    assert held.claimed_by == "w1", "a rollback does not reach into the caller's hands"
    with store.unit_of_work(None) as uow:
        assert uow.notifications.get(held.id).claimed_by is None
        (again,) = uow.notifications.claim("w2", START, START + timedelta(minutes=1), 5)
        uow.commit()
    assert (held.claimed_by, again.claimed_by) == ("w1", "w2")
