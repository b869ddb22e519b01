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
a snapshot resolved under an older generation is returned but not kept. Usage has a
generation of its own: a busy metered owner's consumptions drop its counters and
decisions, never a snapshot being put beside them.

``warm`` holds the same snapshots as ``snapshots``, keyed by the owner's key string: the
request path looks owners up there, where the string's hash is kept by Python and no
Python-level ``__hash__`` runs.

The request path checks one window, ``lo <= clock < hi`` (clock seconds), for every warm
snapshot at once: ``lo`` is the latest instant any of them was resolved for, ``hi`` the
earliest instant one of them stops being valid. With the system clock the window is also
narrowed to the interval in which the change feed was last confirmed (the two clocks are
then one), so one reading of the clock and two float comparisons stand for both guards.
A window that closes because one snapshot ran out is reopened by `settle`, which the slow
path calls: it drops what time made stale and moves ``hi`` to the next expiry (a heap of
the snapshots' bounds). The window is narrowed before a snapshot is published and
widened only after what it no longer covers is gone, so a reader never sees a snapshot
with a window wider than its own validity.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Iterable
from datetime import datetime

from entitlements.domain.owner import Owner, owner_key
from entitlements.domain.resolution import Snapshot
from entitlements.domain.usage import Counter, MetricTerms, UsageDecision

__all__ = ["SnapshotCache"]


class SnapshotCache:
    def __init__(self, max_size: int = 100_000) -> None:
        self.snapshots: dict[Owner, Snapshot] = {}
        self.warm: dict[str, Snapshot] = {}
        self.counters: dict[Owner, dict[tuple[str, datetime], Counter]] = {}
        self.decisions: dict[Owner, dict[tuple[str, int], UsageDecision]] = {}
        self.lanes: dict[Owner, dict[str, MetricTerms]] = {}
        """How each metric is charged under the cached snapshot: kept with it, dropped
        with it."""
        self.generation = 0
        """Bumped by every change of terms: a snapshot resolved under an older one is not
        kept."""
        self.usage_generation = 0
        """Bumped by every change of terms or usage: a counter or decision read under an
        older one is not kept."""
        self.max_size = max_size
        self.lo = math.inf
        """Clock seconds from which every warm snapshot answers (closed until confirmed)."""
        self.hi = -math.inf
        """Clock seconds until which every warm snapshot answers."""
        self.wall_clock = False
        """Whether clock seconds are wall-clock seconds (the system clock): the feed's
        confirmation then narrows the window too (`follow_wall_clock`)."""
        self._confirmed = (math.inf, -math.inf)  # not confirmed yet
        self._newest = -math.inf
        self._expiries: list[tuple[float, int, Snapshot]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._reopen()

    # -- the window ------------------------------------------------------------------

    def follow_wall_clock(self) -> None:
        """The clock is the system clock: fold the feed's confirmation into the window."""
        with self._lock:
            self.wall_clock = True
            self._reopen()

    def confirm(self, since: float, until: float) -> None:
        """The change feed was confirmed at wall-clock ``since``; answers may rely on it
        until ``until``."""
        with self._lock:
            self._confirmed = (since, until)
            self._reopen()

    def settle(self, ts: float) -> None:
        """Drop the snapshots that ran out by clock ``ts`` and reopen the window up to the
        next expiry; a no-op while the window is open."""
        if self.lo <= ts < self.hi:
            return
        with self._lock:
            expiries, dropped = self._expiries, False
            while expiries and expiries[0][0] <= ts:
                snapshot = heapq.heappop(expiries)[2]
                if self.snapshots.get(snapshot.owner) is snapshot:
                    self._drop_terms(snapshot.owner)
                    dropped = True
            if dropped:
                self.generation += 1
                self.usage_generation += 1
            self._reopen()

    def _reopen(self) -> None:
        """Recompute the window (under the lock), after what it no longer covers is gone."""
        expiries, snapshots = self._expiries, self.snapshots
        if len(expiries) > 2 * len(snapshots) + 64:  # mostly replaced or dropped: rebuild
            expiries[:] = [e for e in expiries if snapshots.get(e[2].owner) is e[2]]
            heapq.heapify(expiries)
        while expiries and snapshots.get(expiries[0][2].owner) is not expiries[0][2]:
            heapq.heappop(expiries)
        since, until = self._confirmed if self.wall_clock else (-math.inf, math.inf)
        self.lo = max(self._newest, since)
        self.hi = min(expiries[0][0] if expiries else math.inf, until)

    def _narrow(self, snapshot: Snapshot) -> None:
        """Narrow the window to ``snapshot``'s validity (under the lock), before it is
        published."""
        if snapshot.resolved_ts > self._newest:
            self._newest = snapshot.resolved_ts
            self.lo = max(self.lo, snapshot.resolved_ts)
        if snapshot.expires_ts < math.inf:
            heapq.heappush(self._expiries, (snapshot.expires_ts, next(self._order), snapshot))
            self.hi = min(self.hi, snapshot.expires_ts)

    # -- entries ---------------------------------------------------------------------

    def put(self, snapshot: Snapshot, generation: int) -> None:
        """Keep ``snapshot`` — unless writes moved the generation since it was read, or it
        holds for its own instant only (it would close the window for everyone)."""
        if snapshot.expires_ts <= snapshot.resolved_ts:
            return
        with self._lock:
            if generation != self.generation:
                return
            if snapshot.owner not in self.snapshots and len(self.snapshots) >= self.max_size:
                if not self.snapshots:  # cache_size=0: nothing is kept
                    return
                self._drop_terms(next(iter(self.snapshots)))
            owner = snapshot.owner
            if self.snapshots.get(owner, snapshot) is not snapshot:
                # what was worked out from the snapshot it replaces goes with it
                self.decisions.pop(owner, None)
                self.lanes.pop(owner, None)
            self._narrow(snapshot)
            self.snapshots[owner] = snapshot
            self.warm[owner_key(owner)] = snapshot

    def put_counter(self, counter: Counter, usage_generation: int) -> None:
        with self._lock:
            if usage_generation != self.usage_generation or counter.owner not in self.snapshots:
                return
            self.counters.setdefault(counter.owner, {})[(counter.metric, counter.period_start)] = (
                counter
            )

    def put_decision(
        self, decision: UsageDecision, usage_generation: int, snapshot: Snapshot
    ) -> None:
        """Only decisions on counters without held reservations are kept: one of those
        expiring changes the answer at an instant the memo does not carry. A decision is
        kept only beside the snapshot it was decided on: a reader that decided on an
        older one (another thread replaced it meanwhile) does not put it back."""
        with self._lock:
            if (
                usage_generation == self.usage_generation
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
        self.warm.pop(owner_key(owner), None)
        self.counters.pop(owner, None)
        self.decisions.pop(owner, None)
        self.lanes.pop(owner, None)

    def invalidate(self, owners: Iterable[Owner]) -> None:
        with self._lock:
            self.generation += 1
            self.usage_generation += 1
            for owner in owners:
                self._drop_terms(owner)

    def invalidate_usage(self, owners: Iterable[Owner]) -> None:
        """Usage changed but entitlements did not: keep the snapshots (and let snapshots
        being resolved meanwhile be kept)."""
        with self._lock:
            self.usage_generation += 1
            for owner in owners:
                self.counters.pop(owner, None)
                self.decisions.pop(owner, None)

    def invalidate_usage_of(self, owner: Owner) -> None:
        """`invalidate_usage` of one owner, as each in-process consumption calls it."""
        with self._lock:
            self.usage_generation += 1
            if self.counters.pop(owner, None) is not None:  # decisions are kept only with counters
                self.decisions.pop(owner, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self.usage_generation += 1
            self.snapshots.clear()
            self.warm.clear()
            self.counters.clear()
            self.decisions.clear()
            self.lanes.clear()
            self._expiries.clear()
            self._newest = -math.inf
            self._reopen()

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
                self.usage_generation += 1
            for owner in stale:
                self._drop_terms(owner)
            self._reopen()
            return len(stale)

    def __len__(self) -> int:
        return len(self.snapshots)
