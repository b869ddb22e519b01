"""Keeping this process's cache coherent with writes made by other processes.

Every committed write appends to the change feed in the host's database. A follower per
`Entitlements` reads what came after the last entry it saw and drops exactly what those
entries touched; an answer is never served from a cache that has not been confirmed
against the feed within ``max_staleness``. The follower runs in a background thread,
woken early by the engine's push where there is one (PostgreSQL NOTIFY, SQLite's
``data_version``, an optional Redis channel) — pushes are hints, the feed is the truth.
If the thread is late (the process was forked, the database is slow), the next call
confirms inline.

Numbers are handed out before commit and transactions commit out of order, so a number
seen skipped may still arrive: the follower keeps asking for those for ``gap_timeout``.
A follower that finds the feed pruned past its position has missed entries and drops
everything.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable

from entitlements.domain.change import Change, ChangeKind, FeedPage
from entitlements.errors import EntitlementsError, FeedUnavailable
from entitlements.ports import ChangeHint, FeedSource
from entitlements.service.cache import SnapshotCache

__all__ = ["ChangeHint", "Coherence", "WhenUnreachable"]

log = logging.getLogger("entitlements.coherence")

MAX_MISSING = 10_000


class WhenUnreachable(enum.StrEnum):
    """What an answer does when the feed cannot be read for longer than
    ``max_staleness``: serve the last known answers (logged, counted), or raise
    `FeedUnavailable`."""

    SERVE_STALE = "serve_stale"
    """Answer from the cache as it was; the outage is logged and each such answer counted
    in ``coherence.stale_answers``."""
    RAISE = "raise"
    """Raise `FeedUnavailable` instead of answering."""


class Coherence:
    """The follower of one `Entitlements`. The warm path reads ``fresh_from`` and
    ``fresh_until`` (wall-clock seconds): between them, the cache has been confirmed
    recently enough. Wall-clock, so that with the system clock one reading of the time
    serves both this and the snapshot's own validity; a window with two ends, so that a
    clock stepped back or forward makes the next answer confirm, never trust longer."""

    def __init__(
        self,
        source: FeedSource,
        cache: SnapshotCache,
        *,
        max_staleness: float,
        when_unreachable: WhenUnreachable = WhenUnreachable.SERVE_STALE,
        hints: Callable[[], list[ChangeHint]] = list,
        background: bool = True,
        gap_timeout: float = 60.0,
    ) -> None:
        self.fresh_from = 0.0
        """Wall-clock start of the window in which the cache counts as confirmed."""
        self.fresh_until = 0.0
        """The `time.monotonic` instant until which the cache counts as confirmed; the warm
        path compares it."""
        self.max_staleness = max_staleness
        """How old, in seconds, a confirmation may be before an answer reads the feed."""
        self.when_unreachable = WhenUnreachable(when_unreachable)
        """What answers do while the feed cannot be read."""
        self.stale_answers = 0
        """Answers served while the feed could not be read (`WhenUnreachable.SERVE_STALE`)."""
        self.resyncs = 0
        """Times everything cached was dropped because entries were missed."""
        self._source = source
        self._cache = cache
        self._hints = hints
        self._background = background and max_staleness > 0
        self._gap_timeout = gap_timeout
        self._after: int | None = None
        self._missing: dict[int, float] = {}
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._down_since: float | None = None
        self._thread: threading.Thread | None = None
        self._listeners: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pid = os.getpid()

    # -- answers ---------------------------------------------------------------------

    def ensure_fresh(self) -> None:
        """Confirm the cache against the feed unless that was done within
        ``max_staleness``; called by answers that found themselves outside the window."""
        if self.fresh_from <= time.time() < self.fresh_until:
            return
        now = time.monotonic()
        if self._down_since is not None and now < self._retry_at:
            self._unreachable(now, None)
            return
        self.sync()

    def confirmed_clock(self, clock: Callable[[], float]) -> Callable[[], float]:
        """What the warm path compares with the cache's window (clock seconds): the
        system clock itself, whose window holds this confirmation already; another
        clock's reading only while the confirmation holds by the wall clock, else NaN,
        which no window holds."""
        if clock is time.time:
            return clock

        def confirmed() -> float:
            if self.fresh_from <= time.time() < self.fresh_until:
                return clock()
            return math.nan

        return confirmed

    def has_seen(self, revision: int) -> bool:
        """Whether the entry ``revision`` has been applied here."""
        return self._after is not None and revision <= self._after and revision not in self._missing

    def require(self, revision: int) -> None:
        """Read-your-writes: make sure the entry ``revision`` (returned by a write in
        any process) has been applied here before answering."""
        if not self.has_seen(revision):
            self.sync()

    # -- following -------------------------------------------------------------------

    def sync(self) -> None:
        """Read the feed now and drop what changed (the background thread and answers past
        ``fresh_until`` call it)."""
        with self._lock:
            started, wall = time.monotonic(), time.time()
            if os.getpid() != self._pid:  # forked: the parent's thread did not come along
                self._pid, self._thread, self._after = os.getpid(), None, None
                self._stop = threading.Event()
            try:
                if self._after is None:
                    head = self._source.feed_head()
                    self._cache.clear()
                    self._after, self._missing = head, {}
                else:
                    self._apply(self._source.read_changes(self._after, tuple(self._missing)))
            except EntitlementsError as error:
                self._unreachable(started, error)
                return
            if self._down_since is not None:
                log.warning(
                    "entitlements: change feed readable again after %.1f s",
                    started - self._down_since,
                )
                self._down_since = None
            self.fresh_from, self.fresh_until = wall, wall + self.max_staleness
            self._cache.confirm(wall, wall + self.max_staleness)
            if self._background and self._thread is None:
                self._start()

    def _apply(self, page: FeedPage) -> None:
        after = self._after
        assert after is not None
        if page.pruned_through > after or page.head - after > MAX_MISSING:
            self._resync(page.head)  # entries were missed, or too many to track one by one
            return
        for change in page.changes:
            self._drop(change)
        self._track_gaps(after, page.head, {c.seq for c in page.changes})
        if len(self._missing) > MAX_MISSING:
            self._resync(page.head)
            return
        self._after = page.head

    def _drop(self, change: Change) -> None:
        """Drop from the cache what one feed entry changed."""
        if change.kind is ChangeKind.CATALOG or change.owner is None:
            self._cache.clear()
        elif change.kind is ChangeKind.TERMS:
            self._cache.invalidate([change.owner])
        else:
            self._cache.invalidate_usage([change.owner])

    def _track_gaps(self, after: int, head: int, seen: set[int]) -> None:
        """Numbers handed out before ``head`` and not seen may still commit: ask for them
        again for ``gap_timeout``; forget those that arrived or waited longer."""
        now = time.monotonic()
        for seq in list(self._missing):
            if seq in seen or now - self._missing[seq] > self._gap_timeout:
                del self._missing[seq]
        for seq in range(after + 1, head):
            if seq not in seen:
                self._missing[seq] = now

    def _resync(self, head: int) -> None:
        self.resyncs += 1
        self._cache.clear()
        self._after, self._missing = head, {}

    def _unreachable(self, now: float, error: EntitlementsError | None) -> None:
        if self._down_since is None:
            self._down_since = now
            log.warning("entitlements: cannot read the change feed: %s", error)
        self._retry_at = now + min(max(self.max_staleness, 0.05), 1.0)
        if self.when_unreachable is WhenUnreachable.RAISE:
            raise FeedUnavailable(
                f"cannot confirm cached answers: the change feed has not been readable for "
                f"{now - self._down_since:.1f} s (max_staleness {self.max_staleness} s)"
            ) from error
        self.stale_answers += 1

    # -- the background thread -------------------------------------------------------

    def _start(self) -> None:
        wake = self._wake = threading.Event()
        try:
            hints = self._hints()
        except Exception:
            log.warning("entitlements: no change hints (polling only)", exc_info=True)
            hints = []
        self._listeners = [
            threading.Thread(
                target=_listen,
                args=(hint, wake, self._stop),
                name="entitlements-change-hint",
                daemon=True,
            )
            for hint in hints
        ]
        for listener in self._listeners:
            listener.start()
        thread = threading.Thread(
            target=_follow,
            args=(weakref.ref(self), self._stop, wake),
            name="entitlements-coherence",
            daemon=True,
        )
        self._thread = thread
        thread.start()

    @property
    def interval(self) -> float:
        """How often the background thread reads the feed without a push: half of
        ``max_staleness``."""
        return max(self.max_staleness / 2, 0.005)

    def close(self) -> None:
        """Stop the background thread; answers then confirm inline."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        # a listener holds a connection of its own (SQLite keeps its -wal and -shm files
        # while one is open): closed before close() returns
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.join(timeout=5)


def _follow(ref: weakref.ref[Coherence], stop: threading.Event, wake: threading.Event) -> None:
    try:
        _follow_until_gone(ref, stop, wake)
    finally:
        stop.set()  # an instance dropped without close(): its listeners end with it


def _follow_until_gone(
    ref: weakref.ref[Coherence], stop: threading.Event, wake: threading.Event
) -> None:
    while not stop.is_set():
        follower = ref()
        if follower is None:
            return
        interval = follower.interval
        del follower
        wake.wait(interval)
        wake.clear()
        follower = ref()
        if follower is None or stop.is_set():
            return
        try:
            follower.sync()
        except Exception:  # the answers' own sync reports it; keep following
            log.debug("entitlements: background feed read failed", exc_info=True)
        del follower


_HINT_WAIT = 0.05
"""How long one wait for a push lasts: also how long `Coherence.close` may wait for a
listener to see the stop."""


def _listen(hint: ChangeHint, wake: threading.Event, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            try:
                if hint.wait(_HINT_WAIT):
                    wake.set()
            except Exception:
                log.debug("entitlements: change hint failed; polling only", exc_info=True)
                stop.wait(1.0)
    finally:
        try:
            hint.close()
        except Exception:
            log.debug("entitlements: closing a change hint failed", exc_info=True)
