"""A signer's visit: the link's token, exchanged on first load for a short-lived cookie.

The e-mailed link carries the token. Its first load sets a visit cookie — the token, a
random nonce the page's forms are bound to, whether ``viewed`` was recorded, and when the
visit ends, MAC'd with the host's secret — and redirects to a page whose URL names the
visit, not the token, so the token leaves the address bar, the history and the access
logs after one request. The cookie is ``HttpOnly`` and ``SameSite=Lax``: it rides along
the redirect that follows a click in a mail client (a cross-site navigation), and never
with a post from another site. Opening the same link again in the same browser continues
the same visit, so forms open in other tabs stay valid and ``viewed`` is recorded once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

import attrs
from starlette.requests import Request
from starlette.responses import Response

from entitlements.web.sealed import SealedCookies
from entitlements.web.settings import Settings

__all__ = ["VISIT_LIFETIME", "Visit", "Visits"]

VISIT_LIFETIME = 2 * 3600
"""Seconds a visit lasts after its last page load; after that, the e-mailed link opens a
new one."""


@attrs.frozen
class Visit:
    key: str
    """Names the visit in URLs: derived from the token, useless without the cookie."""
    token: str
    nonce: str
    viewed: bool
    ends: int

    @property
    def bound_to(self) -> str:
        """What the visit's forms are bound to."""
        return "visit:" + self.nonce


def visit_key(token: str) -> str:
    return hashlib.sha256(b"visit\x1f" + token.encode()).hexdigest()[:32]


class Visits:
    def __init__(
        self, secret: bytes, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self._cookies = SealedCookies(
            secret, "visit", settings, max_age=VISIT_LIFETIME, samesite="lax", limit=2000
        )
        self._clock = clock

    @staticmethod
    def _cookie(key: str) -> str:
        return "ent_visit_" + key

    def begin(self, request: Request, token: str) -> Visit:
        """The browser's visit for ``token``: the one under way, or a new one."""
        key = visit_key(token)
        current = self.find(request, key)
        if current is not None and hmac.compare_digest(current.token, token):
            return current
        return Visit(key, token, secrets.token_urlsafe(24), False, 0)

    def find(self, request: Request, key: str) -> Visit | None:
        document = self._cookies.get(request, self._cookie(key), key)
        if document is None:
            return None
        try:
            visit = Visit(
                key, str(document["t"]), str(document["n"]), bool(document["v"]), int(document["e"])
            )
        except (ValueError, KeyError, TypeError):
            return None
        return visit if visit.ends > self._clock() else None

    def keep(self, request: Request, response: Response, visit: Visit) -> None:
        """Store ``visit`` in the browser, for another `VISIT_LIFETIME` seconds."""
        ends = int(self._clock()) + VISIT_LIFETIME
        document = {"t": visit.token, "n": visit.nonce, "v": visit.viewed, "e": ends}
        self._cookies.put(request, response, self._cookie(visit.key), visit.key, document)
