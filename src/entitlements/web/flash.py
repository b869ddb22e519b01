"""A message carried across one redirect: a signing step that fails answers with a
redirect too (so back and refresh never meet a POST in the history), and the page it
leads to shows the error and what the signer had typed, once."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from entitlements.web.sealed import SealedCookies
from entitlements.web.settings import Settings

__all__ = ["Flash"]

COOKIE = "ent_flash"


class Flash:
    def __init__(self, secret: bytes, settings: Settings) -> None:
        self._cookies = SealedCookies(
            secret, "flash", settings, max_age=120, samesite="strict", limit=8000
        )

    def put(
        self, request: Request, response: Response, bound_to: str, document: dict[str, Any]
    ) -> None:
        self._cookies.put(request, response, COOKIE, bound_to, document)

    def clear(self, request: Request, response: Response) -> None:
        self._cookies.clear(request, response, COOKIE)

    def read(self, request: Request, bound_to: str) -> dict[str, Any] | None:
        return self._cookies.get(request, COOKIE, bound_to)
