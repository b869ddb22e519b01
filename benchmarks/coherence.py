"""Coherence across processes: how long a write in process B takes to change process A's
answer, and what following the change feed costs a warm ``allows`` — measured in one run.

    python benchmarks/coherence.py --sqlite                                   # a temp file
    python benchmarks/coherence.py --postgres URL --pgbouncer POOLED_URL --replica REPLICA_URL
    python benchmarks/coherence.py --postgres postgresql+psycopg://postgres@127.0.0.1/bench \\
        --mysql "mysql+pymysql://root@127.0.0.1/bench?charset=utf8mb4"

Each engine's tables are created if missing; rows are added, never wiped. A is this
process with a default ``Entitlements`` (``max_staleness`` 1 s) checking in a loop; B is
a spawned process with its own, flipping an override. Propagation runs from the instant
B's write returned (commit done) to the first check in A that answers with it
(``time.monotonic`` is one clock for all processes of a machine). PostgreSQL wakes A
with NOTIFY, a SQLite file with ``data_version``; MariaDB is polled, so its figure is
bounded by ``max_staleness`` plus one read, not by a push.

Warm ``allows`` is timed with coherence on (a default instance, its follower running)
and off (the follower stopped, the cache never re-confirmed), alternating, best of
several repeats; the ratio is the figure to compare.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from entitlements import Entitlements, Owner, Plan
from entitlements.adapters.sql import SqlStore

Options = dict[str, Any]

PLAN = Plan(
    "bench-coherence",
    "Bench",
    features={f"feature_{i}": True for i in range(20)} | {"flag": False},
    status="active",
)


def owner_of(run: str) -> Owner:
    return Owner("organization", f"coherence-{run}")


def flipper(
    url: str, run: str, conn: Any, redis: str | None = None, options: Options | None = None
) -> None:
    """Process B: flip the owner's ``flag`` override on request, reply with the instant
    the write returned."""
    ents = Entitlements(SqlStore.from_url(url, **(options or {})), redis=redis)
    owner = owner_of(run)
    conn.send("ready")
    while (enabled := conn.recv()) is not None:
        ents.overrides.set_feature(owner, "flag", enabled=enabled, actor="bench", reason="bench")
        conn.send(time.monotonic())
    ents.close()


def prepare(url: str, run: str) -> None:
    store = SqlStore.from_url(url)
    store.create_schema()
    ents = Entitlements(store)
    try:
        ents.plans.get(PLAN.key)
    except Exception:
        ents.plans.define(PLAN, actor="bench")
    ents.subscriptions.subscribe(owner_of(run), PLAN.key, actor="bench")
    ents.close()
    store.engine.dispose()


def propagation(
    url: str, samples: int, redis: str | None = None, options: Options | None = None
) -> list[float]:
    run = f"{time.time_ns()}"
    prepare(url, run)
    owner = owner_of(run)
    ents = Entitlements(SqlStore.from_url(url, **(options or {})), redis=redis)
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    process = ctx.Process(target=flipper, args=(url, run, child, redis, options or {}), daemon=True)
    process.start()
    assert conn.recv() == "ready"
    delays = []
    try:
        for i in range(samples + 1):
            wanted = i % 2 == 0
            assert ents.allows(owner, "flag") is not wanted
            conn.send(wanted)
            while ents.allows(owner, "flag") is not wanted:
                time.sleep(0.0002)
            seen = time.monotonic()
            committed = conn.recv()
            if i:  # the first one also warms B's connections
                delays.append(max(seen - committed, 0.0))
            time.sleep(0.02)
    finally:
        conn.send(None)
        process.join(timeout=10)
        ents.close()
    return delays


def warm_ratio(url: str, number: int, repeat: int) -> tuple[float, float]:
    run = f"{time.time_ns()}"
    prepare(url, run)
    owner = owner_of(run)
    on = Entitlements(SqlStore.from_url(url))
    off = Entitlements(SqlStore.from_url(url), max_staleness=1e6)
    assert on.allows(owner, "feature_1")
    assert off.allows(owner, "feature_1")
    off.close()  # no follower, no hints: the cache is never re-confirmed
    times: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(repeat):
        for name, ents in (("on", on), ("off", off)):
            timer = timeit.Timer(lambda e=ents: e.allows(owner, "feature_1"))  # type: ignore[misc]
            times[name].append(timer.timeit(number) / number * 1e9)
    on.close()
    return min(times["on"]), min(times["off"])


def replica_share(primary: str, replica: str, reads: int, write_every: int) -> tuple[float, float]:
    """A read-heavy mix in one process: staff reads (always from the store) with a write
    every ``write_every`` reads. Returns the share of reads the replica served and the
    mean cost of a read in ms."""
    run = f"{time.time_ns()}"
    prepare(primary, run)
    owner = owner_of(run)
    store = SqlStore.from_url(primary, replicas=[replica])
    ents = Entitlements(store)
    started = time.perf_counter()
    for i in range(reads):
        if i % write_every == write_every - 1:
            ents.overrides.set_feature(owner, "flag", enabled=i % 2 == 0, actor="b", reason="b")
        ents.subscriptions.get(owner)
    elapsed = time.perf_counter() - started
    health = store.health()
    ents.close()
    on_replica = sum(r["reads"] for r in health["replicas"])
    return on_replica / (on_replica + health["reads_on_primary"]), elapsed / reads * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (psycopg driver)")
    parser.add_argument("--mysql", help="a MariaDB/MySQL URL")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file in a temp dir")
    parser.add_argument("--redis", help="a Redis URL: adds MariaDB woken by Redis pub/sub")
    parser.add_argument("--pgbouncer", help="the --postgres database through PgBouncer")
    parser.add_argument("--replica", help="a streaming replica of the --postgres database")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--polling-samples", type=int, default=30)
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    engines: list[tuple[str, str, int, str | None, Options]] = []
    scratch = tempfile.TemporaryDirectory()
    if args.postgres:
        engines.append(("PostgreSQL, NOTIFY", args.postgres, args.samples, None, {}))
    if args.pgbouncer:
        pooled: Options = {"pooler": "transaction"}
        engines += [
            (
                "PgBouncer, listen_url",
                args.pgbouncer,
                args.samples,
                None,
                {**pooled, "listen_url": args.postgres},
            ),
            ("PgBouncer, polling (deaf)", args.pgbouncer, args.polling_samples, None, pooled),
        ]
    if args.sqlite or not (args.postgres or args.mysql):
        path = Path(scratch.name) / "coherence.db"
        engines.append(("SQLite file, data_version", f"sqlite:///{path}", args.samples, None, {}))
    if args.mysql:
        engines.append(("MariaDB, polling", args.mysql, args.polling_samples, None, {}))
        if args.redis:
            engines.append(("MariaDB, Redis pub/sub", args.mysql, args.samples, args.redis, {}))

    print("propagation from B's commit to A's new answer (max_staleness 1.0 s)")
    print(f"{'engine':<28} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, url, samples, redis, options in engines:
        delays = [d * 1000 for d in propagation(url, samples, redis, options)]
        print(
            f"{name:<28} {len(delays):>4} {statistics.median(delays):>8.1f} "
            f"{percentile(delays, 0.99):>8.1f} {max(delays):>8.1f}"
        )

    print("\nwarm ents.allows, coherence on (default) vs off (follower stopped)")
    print(f"{'engine':<28} {'on ns':>8} {'off ns':>8} {'on/off':>8}")
    for name, url, _, redis, options in engines:
        if redis or options:
            continue
        on, off = warm_ratio(url, args.number, args.repeat)
        print(f"{name:<28} {on:>8.1f} {off:>8.1f} {on / off:>8.2f}")
    if args.postgres and args.replica:
        print("\nread-heavy mix (a write every 20 staff reads), with a streaming replica")
        share, cost = replica_share(args.postgres, args.replica, 2000, 20)
        print(f"reads served by the replica: {share:.1%}; mean read {cost:.2f} ms")
    scratch.cleanup()


if __name__ == "__main__":
    main()
