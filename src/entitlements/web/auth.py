"""Who is asking: the host decides, the console only asks.

The console never guesses an actor. The host passes an authenticator — its own session or
SSO check — that turns a request into an `Actor` or refuses (``None``); a refused request
gets a 401 page and touches nothing. What the actor may then do is the library's
`Authorizer`'s call, on every use case.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from starlette.requests import Request

from entitlements.domain.actor import Actor

__all__ = ["Authenticator", "authenticate"]

Authenticator = Callable[[Request], Actor | Awaitable[Actor | None] | None]
"""``request -> Actor`` for staff the host recognises, ``None`` to refuse. May be async."""


async def authenticate(authenticator: Authenticator, request: Request) -> Actor | None:
    found = authenticator(request)
    if inspect.isawaitable(found):
        found = await found
    return found if isinstance(found, Actor) else None
