"""The optional Redis wake-up (extra ``redis``): commits are announced after they commit,
followers wake on them, and the change feed stays the truth — a message never drops or
changes an answer by itself, and a Redis that is down costs only speed."""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid

import pytest

from conftest import server_url
from entitlements import Entitlements, Feature, InvalidInput, Owner, Plan
from entitlements.adapters.redis_hints import RedisChannel
from entitlements.adapters.sql import SqlStore
from entitlements.errors import MissingExtra

ACME = Owner("organization", "acme")
SLOW = 30.0  # a follower that only polled would take this long


@pytest.fixture
def redis_url():
    url = os.environ.get("ENTITLEMENTS_TEST_REDIS_URL")
    if not url:
        pytest.skip("ENTITLEMENTS_TEST_REDIS_URL is not set: the Redis tests need a server")
    return url


@pytest.fixture
def channel(redis_url):
    return RedisChannel(redis_url, f"entitlements-test-{uuid.uuid4().hex}")


@pytest.fixture
def pair(make_store, channel):
    """B writes through the test's store; A is a second instance on its own engine that
    polls only every 30 s, so only the Redis message can make it answer sooner."""
    store = make_store("mysql")
    b = Entitlements(store, redis=channel)
    b.plans.define(Plan("pro", "Pro", features={"export": Feature()}, status="active"), actor="s")
    b.subscriptions.subscribe(ACME, "pro", actor="s")
    a = Entitlements(SqlStore.from_url(server_url("mysql")), max_staleness=SLOW, redis=channel)
    yield a, b
    a.close()
    a.store.engine.dispose()


def eventually(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_commit_announced_on_redis_wakes_other_processes(pair):
    a, b = pair
    assert a.allows(ACME, "export")
    b.overrides.set_feature(ACME, "export", enabled=False, actor="s", reason="abuse")
    assert eventually(lambda: not a.allows(ACME, "export"))  # well before SLOW
    b.subscriptions.suspend(ACME, actor="s")
    assert eventually(lambda: a.snapshot(ACME).status.value == "suspended")


def test_a_message_is_only_a_hint_the_feed_decides(pair, channel):
    import redis

    a, _ = pair
    kept = a.snapshot(ACME)
    reads = a.coherence.resyncs
    client = redis.Redis.from_url(channel.url)
    for _ in range(5):
        client.publish(channel.channel, "999999999")
    client.close()
    time.sleep(0.5)
    assert a.snapshot(ACME) is kept  # nothing in the feed: nothing dropped
    assert a.coherence.resyncs == reads


def test_writes_succeed_and_followers_poll_when_redis_is_down(make_store, caplog):
    store = make_store("sqlite")
    down = RedisChannel("redis://127.0.0.1:1/0")
    b = Entitlements(store, redis=down)
    b.plans.define(Plan("pro", "Pro", features={"export": Feature()}, status="active"), actor="s")
    caplog.set_level(logging.WARNING, logger="entitlements.coherence")
    b.subscriptions.subscribe(ACME, "pro", actor="s")
    b.overrides.set_feature(ACME, "export", enabled=False, actor="s", reason="abuse")
    warnings = [r for r in caplog.records if "cannot publish a change hint" in r.getMessage()]
    assert len(warnings) == 1  # once, not per write
    a = Entitlements(SqlStore.from_url(str(store.engine.url)), max_staleness=0.1, redis=down)
    assert not a.allows(ACME, "export")
    b.overrides.remove(ACME, "feature", "export", actor="s", reason="resolved")
    assert eventually(lambda: a.allows(ACME, "export"))
    a.close()


def test_redis_settings_are_checked():
    with pytest.raises(InvalidInput, match="redis://"):
        RedisChannel("localhost:6379")
    with pytest.raises(InvalidInput, match="channel"):
        RedisChannel("redis://127.0.0.1:6379/0", "")
    with pytest.raises(InvalidInput, match="RedisChannel"):
        Entitlements(SqlStore.from_url("sqlite://"), redis=6379)  # type: ignore[arg-type]


def test_without_the_extra_the_message_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingExtra, match=r"pip install 'entitlements\[redis\]'$"):
        RedisChannel("redis://127.0.0.1:6379/0")
