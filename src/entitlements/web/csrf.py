"""Forms carry proof they came from our own pages.

Signed double submit: the browser holds a random nonce in a ``SameSite=Strict``,
``HttpOnly`` cookie, and every form carries ``nonce.mac``, where the MAC binds the nonce to
the secret and to who is acting (the staff actor, or the signing link). A page elsewhere
can make the browser post, but cannot read the cookie nor compute the MAC, so its forms
lack the token and are refused before anything runs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "FIELD", "CsrfGuard"]

COOKIE = "ent_csrf"
FIELD = "csrf_token"


class CsrfGuard:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, nonce: str, bound_to: str) -> str:
        message = f"{nonce}\x1f{bound_to}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def mac_of(self, purpose: str, text: str) -> str:
        return self._mac(purpose, text)

    @staticmethod
    def _cookie(bound_to: str) -> str:
        """Signing pages keep their own cookie, so that opening a link from an email does
        not expire the forms of a console open in another tab."""
        return COOKIE + "_sign" if bound_to.startswith("link:") else COOKIE

    def token(self, request: Request, bound_to: str) -> str:
        """The form token for this browser; remembers a new nonce to set as the cookie."""
        cookie = self._cookie(bound_to)
        nonce = request.cookies.get(cookie) or getattr(request.state, "csrf_nonce", None)
        if not nonce or len(nonce) > 100:
            nonce = secrets.token_urlsafe(32)
            request.state.csrf_nonce = nonce
            request.state.csrf_cookie = cookie
        return f"{nonce}.{self._mac(nonce, bound_to)}"

    def set_cookie(self, request: Request, response: Response) -> None:
        nonce = getattr(request.state, "csrf_nonce", None)
        if nonce:
            response.set_cookie(
                getattr(request.state, "csrf_cookie", COOKIE),
                nonce,
                path=request.scope.get("root_path") or "/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )

    def valid(self, request: Request, submitted: object, bound_to: str) -> bool:
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin != _origin_of(request):
            return False
        cookie = request.cookies.get(self._cookie(bound_to))
        if not cookie or not isinstance(submitted, str) or submitted.count(".") != 1:
            return False
        nonce, mac = submitted.split(".")
        return hmac.compare_digest(nonce, cookie) and hmac.compare_digest(
            mac, self._mac(nonce, bound_to)
        )


def _origin_of(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"
