"""A message carried across one redirect: a signing step that fails answers with a
redirect too (so back and refresh never meet a POST in the history), and the page it
leads to shows the error and what the signer had typed, once."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from entitlements.web.sealed import Sealer
from entitlements.web.settings import Settings

__all__ = ["Flash"]

COOKIE = "ent_flash"


class Flash:
    def __init__(self, secret: bytes, settings: Settings) -> None:
        self._sealer = Sealer(secret, "flash")
        self._settings = settings

    @staticmethod
    def _path(request: Request) -> str:
        return (request.scope.get("root_path") or "") + "/sign/"

    def put(
        self, request: Request, response: Response, bound_to: str, document: dict[str, Any]
    ) -> None:
        response.set_cookie(
            COOKIE,
            self._sealer.seal(bound_to, document),
            max_age=120,
            path=self._path(request),
            httponly=True,
            samesite="strict",
            secure=self._settings.secure(request),
        )

    def clear(self, request: Request, response: Response) -> None:
        if COOKIE in request.cookies:
            response.delete_cookie(COOKIE, path=self._path(request))

    def read(self, request: Request, bound_to: str) -> dict[str, Any] | None:
        return self._sealer.open(bound_to, request.cookies.get(COOKIE), 8000)
