"""A message carried across one redirect: a signing step that fails answers with a
redirect too (so back and refresh never meet a POST in the history), and the page it
leads to shows the error and what the signer had typed, once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from entitlements.web.settings import Settings

__all__ = ["Flash"]

COOKIE = "ent_flash"


class Flash:
    def __init__(self, secret: bytes, settings: Settings) -> None:
        self._secret = secret
        self._settings = settings

    def _mac(self, bound_to: str, payload: str) -> str:
        message = f"flash\x1f{bound_to}\x1f{payload}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    @staticmethod
    def _path(request: Request) -> str:
        return (request.scope.get("root_path") or "") + "/sign/"

    def put(
        self, request: Request, response: Response, bound_to: str, document: dict[str, Any]
    ) -> None:
        payload = base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
        response.set_cookie(
            COOKIE,
            f"{payload}.{self._mac(bound_to, payload)}",
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
        value = request.cookies.get(COOKIE)
        if not value or value.count(".") != 1 or len(value) > 8000:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(bound_to, payload)):
            return None
        try:
            document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return document if isinstance(document, dict) else None
