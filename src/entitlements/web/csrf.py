"""Forms carry proof they came from our own pages.

A form's token is ``issued.mac``: the MAC binds the time it was made to the secret and to
who is acting — the staff actor the host's authenticator returned, or the signer's visit
(a random nonce in the visit cookie). Nothing about it lives in a cookie of its own, so
arriving from another site, or opening a second tab, replaces nothing and every form
already open keeps working. A page elsewhere can make the browser post, but cannot
compute the MAC, and a signer's visit cookie (``SameSite=Lax``) is not sent with a
cross-site post; its forms are refused before anything runs. The ``Origin`` header, when
the browser sends one, must also be ours.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from starlette.requests import Request

from entitlements.web.settings import Settings

__all__ = ["FIELD", "TOKEN_LIFETIME", "CsrfGuard"]

FIELD = "csrf_token"
TOKEN_LIFETIME = 24 * 3600
"""Seconds a form stays valid: a page left open over a working day still posts."""


class CsrfGuard:
    def __init__(
        self, secret: bytes, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret
        self._settings = settings
        self._clock = clock

    def _mac(self, nonce: str, bound_to: str) -> str:
        message = f"{nonce}\x1f{bound_to}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def mac_of(self, purpose: str, text: str) -> str:
        return self._mac(purpose, text)

    def token(self, bound_to: str) -> str:
        """The form token for whoever ``bound_to`` names."""
        issued = str(int(self._clock()))
        return f"{issued}.{self._mac('form:' + issued, bound_to)}"

    def valid(self, request: Request, submitted: object, bound_to: str) -> bool:
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin != self._settings.origin(request):
            return False
        if not isinstance(submitted, str) or submitted.count(".") != 1 or len(submitted) > 200:
            return False
        issued, mac = submitted.split(".")
        if not issued.isdigit() or not -300 <= self._clock() - int(issued) <= TOKEN_LIFETIME:
            return False
        return hmac.compare_digest(mac, self._mac("form:" + issued, bound_to))
