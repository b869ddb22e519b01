"""Small documents kept in the browser, in cookies it cannot forge: JSON, base64url, and a
MAC over the host's secret, what the cookie is for and what it is bound to.

`SealedCookies` is the one place that says how the signing pages set such a cookie:
under the pages' own path, out of reach of scripts, and sent back only over HTTPS when
the request came that way."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from entitlements.web.settings import Settings

__all__ = ["SealedCookies", "Sealer"]


class Sealer:
    def __init__(self, secret: bytes, purpose: str) -> None:
        self._secret = secret
        self._purpose = purpose

    def _mac(self, bound_to: str, payload: str) -> str:
        message = f"{self._purpose}\x1f{bound_to}\x1f{payload}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def seal(self, bound_to: str, document: dict[str, Any]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
        return f"{payload}.{self._mac(bound_to, payload)}"

    def open(self, bound_to: str, value: str | None, limit: int) -> dict[str, Any] | None:
        """The document ``seal`` made for ``bound_to``; ``None`` for anything else."""
        if not value or value.count(".") != 1 or len(value) > limit:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(bound_to, payload)):
            return None
        try:
            document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return document if isinstance(document, dict) else None


class SealedCookies:
    """Sealed documents kept in the signer's browser for one ``purpose`` (a flash message,
    a visit, a remembered link), each for ``max_age`` seconds."""

    def __init__(
        self,
        secret: bytes,
        purpose: str,
        settings: Settings,
        *,
        max_age: int,
        samesite: Literal["lax", "strict"],
        limit: int,
    ) -> None:
        self._sealer = Sealer(secret, purpose)
        self._settings = settings
        self._max_age, self._samesite, self._limit = max_age, samesite, limit

    @staticmethod
    def path(request: Request) -> str:
        """The signing pages' path: the cookies are sent to nothing else."""
        return (request.scope.get("root_path") or "") + "/sign/"

    def put(
        self,
        request: Request,
        response: Response,
        name: str,
        bound_to: str,
        document: dict[str, Any],
    ) -> None:
        response.set_cookie(
            name,
            self._sealer.seal(bound_to, document),
            max_age=self._max_age,
            path=self.path(request),
            httponly=True,
            samesite=self._samesite,
            secure=self._settings.secure(request),
        )

    def get(self, request: Request, name: str, bound_to: str) -> dict[str, Any] | None:
        """The document cookie ``name`` holds for ``bound_to``; ``None`` for anything else."""
        return self._sealer.open(bound_to, request.cookies.get(name), self._limit)

    def clear(self, request: Request, response: Response, name: str) -> None:
        if name in request.cookies:
            response.delete_cookie(name, path=self.path(request))
