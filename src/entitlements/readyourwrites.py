"""Read-your-writes for web hosts: a session never reads older than what it wrote.

A host runs several worker processes, each with its own `Entitlements` and its own cache.
A user changes their plan in a request served by worker A; their next request lands on
worker B, whose cache may still hold the old plan for up to ``max_staleness``. These
middlewares close that gap for the session that wrote:

- after a request whose handler committed a write, the response carries the write's
  change-feed position in a small signed cookie;
- at the start of every request that brings the cookie, the worker catches up to that
  position before the handler runs (`Entitlements.catch_up`: nothing to do when it has
  applied it already; otherwise one read of the change feed), so every answer in the
  request is at least as new as the session's last write.

WSGI (Flask, Django)::

    from entitlements.readyourwrites import ReadYourWritesWSGI
    flask_app.wsgi_app = ReadYourWritesWSGI(flask_app.wsgi_app, ents, secret=SECRET)
    # Django, in wsgi.py:
    application = ReadYourWritesWSGI(get_wsgi_application(), ents, secret=SECRET)

ASGI (Starlette, FastAPI, Django's ASGI handler)::

    from entitlements.readyourwrites import ReadYourWritesASGI
    app = ReadYourWritesASGI(app, ents, secret=SECRET)

The cookie holds a number, nothing about the user; it is signed (HMAC-SHA256 with the
host's secret) so that a client cannot make a worker read the feed on every request with
made-up positions. A cookie that fails its check is ignored, never an error. Writes made
while streaming a body, after the response headers went out, do not move the cookie.
Dependency-free: plain WSGI and ASGI, no web framework needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from entitlements.errors import InvalidInput

if TYPE_CHECKING:
    from entitlements.service.entitlements import Entitlements

__all__ = ["COOKIE", "ReadYourWritesASGI", "ReadYourWritesWSGI", "SessionPosition"]

COOKIE = "entitlements_rev"
"""The cookie's default name."""

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]
_StartResponse = Callable[..., Any]
_WSGIApp = Callable[[dict[str, Any], _StartResponse], Iterable[bytes]]
_App = TypeVar("_App")


class SessionPosition:
    """The signed cookie both middlewares share: reading the position a request brings,
    catching up to it, and writing the one a request committed."""

    def __init__(
        self,
        ents: Entitlements,
        secret: str | bytes,
        *,
        cookie: str = COOKIE,
        max_age: int = 3600,
        secure: bool = True,
        path: str = "/",
    ) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise InvalidInput("secret", "must be at least 16 bytes of the host's secret", None)
        if not isinstance(cookie, str) or not cookie.isidentifier():
            raise InvalidInput("cookie", "must be a plain cookie name", cookie)
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age <= 0:
            raise InvalidInput("max_age", "must be a positive number of seconds", max_age)
        self.ents = ents
        """The `Entitlements` whose change feed positions are carried."""
        self.cookie = cookie
        """The cookie's name."""
        self._key = hashlib.sha256(b"entitlements read-your-writes\0" + secret).digest()
        attributes = f"Max-Age={max_age}; Path={path}; HttpOnly; SameSite=Lax"
        self._attributes = attributes + ("; Secure" if secure else "")

    def _mac(self, revision: int) -> str:
        return hmac.new(self._key, str(revision).encode(), hashlib.sha256).hexdigest()[:32]

    def read(self, cookie_header: str | None) -> int | None:
        """The position in a ``Cookie`` header, if the cookie is there and its signature
        holds; ``None`` otherwise."""
        if not cookie_header or self.cookie not in cookie_header:
            return None
        try:
            morsel = SimpleCookie(cookie_header).get(self.cookie)
        except CookieError:
            return None
        revision, _, mac = (morsel.value if morsel else "").partition(".")
        if not revision.isdigit() or len(revision) > 19:
            return None
        if not hmac.compare_digest(mac, self._mac(int(revision))):
            return None
        return int(revision)

    def header(self, revision: int) -> str:
        """The ``Set-Cookie`` value carrying ``revision``."""
        return f"{self.cookie}={revision}.{self._mac(revision)}; {self._attributes}"

    def needs_catch_up(self, revision: int | None) -> bool:
        """Whether this process has yet to apply ``revision`` (a cheap check)."""
        return revision is not None and not self.ents.coherence.has_seen(revision)

    def catch_up(self, revision: int | None) -> None:
        """Apply the change feed here up to ``revision`` before the request is handled."""
        if self.needs_catch_up(revision):
            self.ents.catch_up(revision)

    def listen(self) -> tuple[list[int], Any]:
        """Start hearing the positions this request's context commits: a list that fills
        as it writes, and the token that `stop` takes."""
        written: list[int] = []
        return written, self.ents.runtime.written.set(written)

    def stop(self, token: Any) -> None:
        self.ents.runtime.written.reset(token)

    def outgoing(self, brought: int | None, written: list[int]) -> str | None:
        """The ``Set-Cookie`` value for a response, when the request wrote."""
        if not written:
            return None
        return self.header(max(written if brought is None else [brought, *written]))


class _Middleware(Generic[_App]):
    """What both middlewares hold: the host's application and the cookie."""

    def __init__(
        self,
        app: _App,
        ents: Entitlements,
        *,
        secret: str | bytes,
        cookie: str = COOKIE,
        max_age: int = 3600,
        secure: bool = True,
    ) -> None:
        self.app = app
        """The host's application, which the middleware wraps."""
        self.position = SessionPosition(ents, secret, cookie=cookie, max_age=max_age, secure=secure)
        """The signed cookie's reader and writer."""


class ReadYourWritesWSGI(_Middleware[_WSGIApp]):
    """WSGI middleware (Flask, Django): a request that brings the cookie is answered at
    least from the position it names; one that writes sends the new position out."""

    def __call__(self, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        position = self.position
        brought = position.read(environ.get("HTTP_COOKIE"))
        position.catch_up(brought)
        written, token = position.listen()

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            outgoing = position.outgoing(brought, written)
            if outgoing is not None:
                headers = [*headers, ("Set-Cookie", outgoing)]
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            position.stop(token)


class ReadYourWritesASGI(_Middleware[_ASGIApp]):
    """ASGI middleware (Starlette, FastAPI, Django's ASGI handler): the same as
    `ReadYourWritesWSGI`. Catching up reads the database, so it runs in the event loop's
    default executor, and only when this process has not applied the position yet."""

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        position = self.position
        brought = position.read(_cookie_header(scope))
        if position.needs_catch_up(brought):
            await asyncio.get_running_loop().run_in_executor(None, position.catch_up, brought)
        written, token = position.listen()

        async def sending(message: _Message) -> None:
            if message["type"] == "http.response.start":
                outgoing = position.outgoing(brought, written)
                if outgoing is not None:
                    headers = [*message.get("headers", []), (b"set-cookie", outgoing.encode())]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            position.stop(token)


def _cookie_header(scope: _Scope) -> str | None:
    found = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"cookie"]
    return "; ".join(found) if found else None
