"""The warm path's memory: resolved snapshots, counters and usage decisions per owner,
and how each metric is charged under the snapshot (its lanes).

What is worked out from a snapshot (decisions, lanes) lives exactly as long as it: a
snapshot replaced (time moved past its validity) or dropped takes them along.

Three things make an entry stale, and each has its own guard: time (a snapshot carries
the instant it stops being valid, and readers compare it with the clock); this process's
writes (they drop what they touched, before and after commit); other processes' writes
(the change feed, followed by `entitlements.service.coherence`, drops what they touched).

A reader that resolved a snapshot while a writer committed must not put its (now stale)
snapshot back after the writer's invalidation; every invalidation bumps a generation, and
a snapshot resolved under an older generation is returned but not kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime

from entitlements.domain.owner import Owner
from entitlements.domain.resolution import Snapshot
from entitlements.domain.usage import Counter, MetricTerms, UsageDecision

__all__ = ["SnapshotCache"]


class SnapshotCache:
    def __init__(self, max_size: int = 100_000) -> None:
        self.snapshots: dict[Owner, Snapshot] = {}
        self.counters: dict[Owner, dict[tuple[str, datetime], Counter]] = {}
        self.decisions: dict[Owner, dict[tuple[str, int], UsageDecision]] = {}
        self.lanes: dict[Owner, dict[str, MetricTerms]] = {}
        """How each metric is charged under the cached snapshot: kept with it, dropped
        with it."""
        self.generation = 0
        self.max_size = max_size
        self._lock = threading.Lock()

    def put(self, snapshot: Snapshot, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if snapshot.owner not in self.snapshots and len(self.snapshots) >= self.max_size:
                self._drop_terms(next(iter(self.snapshots)))
            owner = snapshot.owner
            if self.snapshots.get(owner, snapshot) is not snapshot:
                # what was worked out from the snapshot it replaces goes with it
                self.decisions.pop(owner, None)
                self.lanes.pop(owner, None)
            self.snapshots[owner] = snapshot

    def put_counter(self, counter: Counter, generation: int) -> None:
        with self._lock:
            if generation != self.generation or counter.owner not in self.snapshots:
                return
            self.counters.setdefault(counter.owner, {})[(counter.metric, counter.period_start)] = (
                counter
            )

    def put_decision(self, decision: UsageDecision, generation: int, snapshot: Snapshot) -> None:
        """Only decisions on counters without held reservations are kept: one of those
        expiring changes the answer at an instant the memo does not carry. A decision is
        kept only beside the snapshot it was decided on: a reader that decided on an
        older one (another thread replaced it meanwhile) does not put it back."""
        with self._lock:
            if (
                generation == self.generation
                and decision.owner in self.counters
                and self.snapshots.get(decision.owner) is snapshot
            ):
                self.decisions.setdefault(decision.owner, {})[
                    (decision.metric, decision.requested)
                ] = decision

    def put_lane(self, lane: MetricTerms) -> None:
        """Keep how a metric is charged beside the snapshot it was worked out from (not
        if another has replaced it meanwhile)."""
        owner = lane.snapshot.owner
        with self._lock:
            if self.snapshots.get(owner) is lane.snapshot:
                self.lanes.setdefault(owner, {})[lane.metric] = lane

    def _drop_terms(self, owner: Owner) -> None:
        self.snapshots.pop(owner, None)
        self.counters.pop(owner, None)
        self.decisions.pop(owner, None)
        self.lanes.pop(owner, None)

    def invalidate(self, owners: Iterable[Owner]) -> None:
        with self._lock:
            self.generation += 1
            for owner in owners:
                self._drop_terms(owner)

    def invalidate_usage(self, owners: Iterable[Owner]) -> None:
        """Usage changed but entitlements did not: keep the snapshots."""
        with self._lock:
            self.generation += 1
            for owner in owners:
                self.counters.pop(owner, None)
                self.decisions.pop(owner, None)

    def invalidate_usage_of(self, owner: Owner) -> None:
        """`invalidate_usage` of one owner, as each in-process consumption calls it."""
        with self._lock:
            self.generation += 1
            if self.counters.pop(owner, None) is not None:  # decisions are kept only with counters
                self.decisions.pop(owner, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self.snapshots.clear()
            self.counters.clear()
            self.decisions.clear()
            self.lanes.clear()

    def expire(self, now: datetime) -> int:
        """Drop snapshots that time has made stale (readers never serve them; this frees
        their memory)."""
        with self._lock:
            stale = [
                o
                for o, s in self.snapshots.items()
                if s.valid_until is not None and s.valid_until <= now
            ]
            if stale:
                self.generation += 1
            for owner in stale:
                self._drop_terms(owner)
            return len(stale)

    def __len__(self) -> int:
        return len(self.snapshots)
