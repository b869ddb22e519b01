"""The signing page's bad-token limit holds across processes: four spawned workers, each
with its own `Entitlements` and its own app, share one count (in the database, or in
Redis), so four workers do not allow four times the limit."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("httpx2", reason="the test extra (httpx2) is not installed")

from conftest import server_url
from races import run_processes

ATTEMPTS = 5
WORKERS = 4
EACH = 6


def limiter_for(where: str, engine: Any) -> Any:
    from entitlements.web import RedisBadTokenLimiter, SqlBadTokenLimiter

    if where.startswith("redis"):
        url, prefix = where.split(" ", 1)
        return RedisBadTokenLimiter(url, attempts=ATTEMPTS, prefix=prefix)
    return SqlBadTokenLimiter(engine, attempts=ATTEMPTS)


def guess(url: str, where: str, worker: int, barrier: Any, results: Any) -> None:
    from starlette.testclient import TestClient

    from entitlements import Entitlements
    from entitlements.adapters.sql import SqlStore
    from web_host import make_host

    store = SqlStore.from_url(url)
    ents = Entitlements(store)
    client = TestClient(make_host(ents, limiter=limiter_for(where, store.engine)))
    barrier.wait(timeout=60)
    for n in range(EACH):
        answer = client.get(f"/billing/sign/{'g' * 30}{worker:03d}{n:03d}")
        results.put(answer.status_code)
    ents.close()
    store.engine.dispose()


def run(url: str, where: str) -> list[int]:
    return run_processes(guess, [(url, where, w) for w in range(WORKERS)])


def assert_held(statuses: list[int]) -> None:
    assert len(statuses) == WORKERS * EACH
    assert set(statuses) <= {404, 429}
    assert 1 <= statuses.count(404) <= ATTEMPTS, "four workers share one limit"
    assert statuses.count(429) >= WORKERS * EACH - ATTEMPTS


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_the_bad_token_limit_holds_across_four_workers_through_the_database(kind, make_store):
    make_store(kind)  # a clean schema at the head, with the failures table
    assert_held(run(server_url(kind), "database"))


def test_the_bad_token_limit_holds_across_four_workers_through_redis(make_store):
    pytest.importorskip("redis", reason="the redis extra is not installed")
    redis_url = os.environ.get("ENTITLEMENTS_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("ENTITLEMENTS_TEST_REDIS_URL is not set")
    make_store("postgres")
    prefix = f"entitlements-test:{uuid.uuid4().hex}:"
    assert_held(run(server_url("postgres"), f"{redis_url} {prefix}"))


def test_a_sql_store_shares_its_limit_by_default(make_store):
    from entitlements import Entitlements
    from entitlements.adapters.memory import MemoryStore
    from entitlements.web import BadTokenLimiter, SqlBadTokenLimiter
    from entitlements.web.ratelimit import default_limiter

    store = make_store("sqlite")
    assert isinstance(default_limiter(Entitlements(store).runtime.store), SqlBadTokenLimiter)
    assert isinstance(default_limiter(MemoryStore()), BadTokenLimiter)
    limiter = SqlBadTokenLimiter(store.engine, attempts=2, window=60)
    assert [limiter.fail("10.0.0.1") for _ in range(3)] == [False, False, True]
    assert limiter.fail("10.0.0.2") is False, "another address has its own count"
