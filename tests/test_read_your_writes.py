"""Read-your-writes for web hosts: a session that changed its plan in one worker is never
answered with the old plan by another worker, whatever ``max_staleness`` allows.

The process tests run two real worker processes (spawned, each a Flask app with its own
`Entitlements` behind `ReadYourWritesWSGI`, served over HTTP) on PostgreSQL and MariaDB,
with a one-minute staleness bound so that only the cookie can explain a fresh answer on
MariaDB (no push there)."""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import threading
from typing import Any

import pytest

from entitlements import Entitlements, Limit, MemoryStore, Owner, Plan
from entitlements.errors import InvalidInput
from entitlements.readyourwrites import (
    COOKIE,
    ReadYourWritesASGI,
    ReadYourWritesWSGI,
    SessionPosition,
)

SECRET = "test-secret-0123456789abcdef"
ACME = Owner("organization", "acme")
SPAWN = multiprocessing.get_context("spawn")


def define(ents: Entitlements) -> None:
    ents.plans.define(
        Plan("free", "Free", limits={"projects": Limit(1)}, status="active"), actor="s"
    )
    ents.plans.define(
        Plan("pro", "Pro", limits={"projects": Limit(50)}, status="active"), actor="s"
    )
    ents.subscriptions.subscribe(ACME, "free", actor="s")


# -- the cookie ------------------------------------------------------------------------


def test_the_cookie_carries_a_signed_position_and_nothing_else_passes() -> None:
    ents = Entitlements(MemoryStore())
    position = SessionPosition(ents, SECRET)
    value = position.header(42).split(";")[0]
    assert position.read(value) == 42
    assert position.read(f"theme=dark; {value}; lang=en") == 42
    other = SessionPosition(ents, "another-secret-0123456789")
    forged = [
        other.header(42).split(";")[0],
        value.replace("42.", "43."),
        f"{COOKIE}=42",
        f"{COOKIE}=",
        f"{COOKIE}=-1.{'0' * 32}",
        f'{COOKIE}="unterminated',
        "",
        None,
    ]
    assert [position.read(cookie) for cookie in forged] == [None] * len(forged)
    ents.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"secret": "short"}, "secret"), ({"cookie": "a b"}, "cookie"), ({"max_age": 0}, "max_age")],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], field: str) -> None:
    ents = Entitlements(MemoryStore())
    with pytest.raises(InvalidInput) as refused:
        SessionPosition(ents, **{"secret": SECRET, **kwargs})
    assert refused.value.field == field
    ents.close()


# -- the middlewares in one process ----------------------------------------------------


def _wsgi_app(ents: Entitlements) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["REQUEST_METHOD"] == "POST":
            ents.subscriptions.change_plan(ACME, environ["QUERY_STRING"], actor="member:ada")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(ents.snapshot(ACME).plan_key).encode()]

    return app


def _call_wsgi(app: Any, method: str, query: str = "", cookie: str | None = None) -> Any:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["headers"] = dict(headers)

    environ = {"REQUEST_METHOD": method, "QUERY_STRING": query}
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    body = b"".join(app(environ, start_response))
    return body.decode(), seen["headers"].get("Set-Cookie")


def test_wsgi_a_write_sends_its_position_and_a_read_sends_nothing() -> None:
    ents = Entitlements(MemoryStore())
    define(ents)
    app = ReadYourWritesWSGI(_wsgi_app(ents), ents, secret=SECRET)
    assert _call_wsgi(app, "GET") == ("free", None)
    body, cookie = _call_wsgi(app, "POST", "pro")
    assert body == "pro"
    assert app.position.read(cookie.split(";")[0]) == ents.last_revision
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert _call_wsgi(app, "GET", cookie=cookie.split(";")[0]) == ("pro", None)
    ents.close()


def test_asgi_a_write_sends_its_position_and_the_next_request_catches_up() -> None:
    ents = Entitlements(MemoryStore())
    define(ents)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["method"] == "POST":
            # a sync handler run in a thread with a copy of the request's context
            await asyncio.to_thread(ents.subscriptions.change_plan, ACME, "pro", actor="member:ada")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = ReadYourWritesASGI(app, ents, secret=SECRET)

    async def call(method: str, cookie: str | None = None) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            sent.append(message)

        headers = [(b"cookie", cookie.encode())] if cookie else []
        scope = {"type": "http", "method": method, "headers": headers}
        await middleware(scope, receive, send)
        return sent

    posted = asyncio.run(call("POST"))
    (cookie,) = [v.decode() for k, v in posted[0]["headers"] if k == b"set-cookie"]
    # heard although the write ran in a thread, with a copy of the request's context
    assert middleware.position.read(cookie.split(";")[0]) == ents.store.feed_head()
    read = asyncio.run(call("GET", cookie.split(";")[0]))
    assert not [k for k, _ in read[0]["headers"] if k == b"set-cookie"]
    assert ents.snapshot(ACME).plan_key == "pro"
    ents.close()


# -- two worker processes on one database ----------------------------------------------


def serve(url: str, ports: Any, stop: Any) -> None:
    """One worker: a Flask app with its own `Entitlements` (a one-minute staleness bound)
    behind the middleware, on a free port."""
    from flask import Flask, request
    from werkzeug.serving import make_server

    from entitlements.adapters.sql import SqlStore

    ents = Entitlements(SqlStore.from_url(url), max_staleness=60)
    app = Flask(__name__)

    @app.get("/plan")
    def plan() -> str:
        return str(ents.snapshot(ACME).plan_key)

    @app.post("/plan")
    def change() -> str:
        ents.subscriptions.change_plan(ACME, request.args["to"], actor="member:ada")
        return str(ents.snapshot(ACME).plan_key)

    app.wsgi_app = ReadYourWritesWSGI(app.wsgi_app, ents, secret=SECRET, secure=False)  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    ports.put(server.server_port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()
    ents.close()


def http_call(port: int, method: str, path: str, cookie: str | None) -> tuple[str, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, headers={"Cookie": cookie} if cookie else {})
    response = connection.getresponse()
    body = response.read().decode()
    assert response.status == 200, body
    set_cookie = response.getheader("Set-Cookie")
    connection.close()
    return body, None if set_cookie is None else set_cookie.split(";")[0]


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_plan_change_in_one_worker_is_never_read_old_by_another(make_store, kind) -> None:
    store = make_store(kind)
    setup = Entitlements(store)
    define(setup)
    setup.close()
    ports, stop = SPAWN.Queue(), SPAWN.Event()
    workers = [
        SPAWN.Process(
            target=serve, args=(store.engine.url.render_as_string(hide_password=False), ports, stop)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        a, b = ports.get(timeout=120), ports.get(timeout=120)
        cookie = None
        answers = []
        for round_, target in enumerate(["pro", "free", "pro", "free", "pro", "free"]):
            writer, reader = (a, b) if round_ % 2 == 0 else (b, a)
            before, _ = http_call(reader, "GET", "/plan", cookie)  # the reader caches the plan
            assert before != target
            body, cookie = http_call(writer, "POST", f"/plan?to={target}", cookie)
            assert body == target
            assert cookie is not None
            answers.append(http_call(reader, "GET", "/plan", cookie)[0])
        assert answers == ["pro", "free", "pro", "free", "pro", "free"]
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
