"""Warm-path cost: how much a cached entitlement check costs next to a plain dict lookup
and to the OpenFeature SDK's in-memory evaluation, all timed in this one run.

    python benchmarks/warm_checks.py            # needs the `bench` extra for OpenFeature

Each figure is the best of several repeats of a tight loop (ns per call); the ratios
are what to compare across machines.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from entitlements import Entitlements, Feature, Limit, MemoryStore, Owner, Plan


def per_call_ns(fn: Callable[[], object], number: int, repeat: int) -> float:
    timer = timeit.Timer(fn)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def openfeature_evaluation() -> Callable[[], object] | None:
    try:
        from openfeature import api
        from openfeature.evaluation_context import EvaluationContext
        from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
    except ImportError:
        return None
    api.set_provider(InMemoryProvider({"export": InMemoryFlag("on", {"on": True, "off": False})}))
    client = api.get_client()
    context = EvaluationContext(targeting_key="organization:acme")
    return lambda: client.get_boolean_value("export", False, context)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    ents = Entitlements(MemoryStore())
    ents.plans.define(
        Plan(
            "business",
            "Business",
            limits={"seats": Limit(10), "projects": Limit(100), "storage": Limit(10**9)},
            features={f"feature_{i}": True for i in range(40)} | {"export": Feature()},
            status="active",
        ),
        actor="bench",
    )
    owner = Owner("organization", "acme")
    ents.subscriptions.subscribe(owner, "business", actor="bench")
    snapshot = ents.snapshot(owner)
    plain = {f"feature_{i}": True for i in range(40)} | {"export": True}
    same_owner = Owner("organization", "acme")
    cached = ents.runtime.cache.snapshots
    ents.allows(owner, "export")  # cached now

    def unchecked() -> bool:
        """The warm path without its validity check (time and other processes' writes):
        what the check costs is the difference."""
        found = cached.get(owner)
        assert found is not None
        return found.allows("export")

    cases: list[tuple[str, Callable[[], object]]] = [
        ("dict.get (baseline)", lambda: plain.get("export")),
        ("dict[key]", lambda: plain["export"]),
        ("snapshot.allows(feature)", lambda: snapshot.allows("export")),
        ("snapshot.allows(feature, action)", lambda: snapshot.allows("export", "create")),
        ("snapshot.limit(name)", lambda: snapshot.limit("projects")),
        ("ents.allows(owner, feature) warm", lambda: ents.allows(owner, "export")),
        ("  same, without the validity check", unchecked),
        ("ents.allows(equal owner) warm", lambda: ents.allows(same_owner, "export")),
        ("ents.allows(owner, missing) warm", lambda: ents.allows(owner, "teleport")),
        ("ents.limit(owner, name) warm", lambda: ents.limit(owner, "projects")),
        ("snapshot.explain(feature)", lambda: snapshot.explain("export")),
    ]
    openfeature = openfeature_evaluation()
    if openfeature is not None:
        cases.append(("OpenFeature get_boolean_value", openfeature))

    results = {name: per_call_ns(fn, args.number, args.repeat) for name, fn in cases}
    base = results["dict.get (baseline)"]
    print(f"{'case':<36} {'ns/call':>9} {'x dict.get':>11}")
    for name, ns in results.items():
        print(f"{name:<36} {ns:>9.1f} {ns / base:>11.2f}")
    checked = results["ents.allows(owner, feature) warm"]
    added = checked / results["  same, without the validity check"] - 1
    print(
        f"\nthe validity check adds {added:.0%} to a warm allows (target: at most 50%);"
        f" a warm allows is {checked / base:.1f}x a dict lookup (target: within 10x)"
    )
    if openfeature is not None:
        speedup = (
            results["OpenFeature get_boolean_value"] / results["ents.allows(owner, feature) warm"]
        )
        print(f"\nents.allows is {speedup:.0f}x faster than OpenFeature's in-memory evaluation")
    else:
        print("\n(OpenFeature not installed: pip install -e '.[bench]' to compare)")


if __name__ == "__main__":
    main()
