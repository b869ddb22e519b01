"""The processes of the coherence tests, in a module of their own so that a spawned child
imports only this (and the library), and a TCP relay the tests cut to make a database
unreachable.

Each child opens its own default ``Entitlements(SqlStore.from_url(url))`` — nothing is
shared with the parent but the database — and talks to the parent over a pipe.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

import sqlalchemy as sa

from entitlements import Entitlements, LimitExceeded, Owner
from entitlements.adapters.sql import SqlStore

ACME = Owner("organization", "acme")
POOLED_URL = "ENTITLEMENTS_TEST_PGBOUNCER_URL"


def direct_url(url: str) -> str:
    """The same database reached directly: the PostgreSQL server behind the pooler."""
    server = sa.make_url(os.environ.get("ENTITLEMENTS_TEST_POSTGRES_URL", url))
    return sa.make_url(url).set(host=server.host, port=server.port).render_as_string(False)


def open_store(url: str) -> SqlStore:
    """A store as a host opens it: through the pooler (when the URL is the pooler's), told
    so and given the direct URL to listen on."""
    pooled = os.environ.get(POOLED_URL)
    if pooled and sa.make_url(url).port == sa.make_url(pooled).port:
        return SqlStore.from_url(url, pooler="transaction", listen_url=direct_url(url))
    return SqlStore.from_url(url)


FIELDS = ("revision", "status", "plan", "export", "sso", "calls_ok")


def observe(ents: Entitlements) -> dict[str, Any]:
    """What a request handler would ask, through the public checks (warm when cached)."""
    snapshot = ents.snapshot(ACME)
    return {
        "revision": snapshot.revision,
        "status": None if snapshot.status is None else snapshot.status.value,
        "plan": snapshot.plan_key,
        "export": ents.allows(ACME, "export"),
        "sso": ents.allows(ACME, "sso"),
        "calls_ok": ents.usage.check(ACME, "calls").allowed,
    }


def reader(url: str, conn: Any) -> None:
    """Process A: checks in a loop, keeping the sequence of distinct values each answer
    took; answers probes (optionally after ``catch_up``) with a fresh observation."""
    ents = Entitlements(open_store(url))
    history: dict[str, list[Any]] = {f: [] for f in FIELDS}
    checks = 0

    def note(state: dict[str, Any]) -> None:
        for field, value in state.items():
            seen = history[field]
            if not seen or seen[-1] != value:
                seen.append(value)

    note(observe(ents))
    conn.send(("ready", ents.coherence.max_staleness, ents.coherence.interval))
    while True:
        if conn.poll():
            command, argument = conn.recv()
            if command == "stop":
                conn.send(("done", checks, history, ents.coherence.resyncs))
                ents.close()
                return
            if command == "catch_up":
                ents.catch_up(argument)
            state = observe(ents)
            note(state)
            conn.send(("state", state))
            continue
        note(observe(ents))
        checks += 1


def writer(url: str, conn: Any) -> None:
    """Process B: performs the parent's writes, replying with ``last_revision``."""
    ents = Entitlements(open_store(url))
    conn.send(("ready", None))
    while True:
        command = conn.recv()
        if command == "stop":
            ents.close()
            return
        result: Any = None
        if command == "override":
            ents.overrides.set_feature(ACME, "sso", enabled=True, actor="staff", reason="deal")
        elif command == "change_plan":
            ents.subscriptions.change_plan(ACME, "team", actor="staff")
        elif command == "consume_to_limit":
            accepted = refused = 0
            while refused == 0:
                try:
                    ents.usage.consume(ACME, "calls")
                    accepted += 1
                except LimitExceeded:
                    refused += 1
            result = accepted
        elif command == "suspend":
            ents.subscriptions.suspend(ACME, actor="staff")
        conn.send((result, ents.last_revision))


class Relay:
    """A TCP relay to a database server that the test can cut (every connection through
    it drops, new ones are refused) and restore on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
