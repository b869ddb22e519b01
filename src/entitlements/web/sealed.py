"""Small documents kept in the browser, in cookies it cannot forge: JSON, base64url, and a
MAC over the host's secret, what the cookie is for and what it is bound to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

__all__ = ["Sealer"]


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
