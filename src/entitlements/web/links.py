"""What this browser remembers about a signing link it has opened.

The library forgets a token's hash once the link is used, replaced, voided or expired,
and answers every such token alike (`InvalidToken`) — rightly, or a guesser could learn
which contracts exist. The signer who comes back still deserves to be told what happened
("you have signed", "this link was replaced"). So when a link opens, the browser keeps a
cookie, MAC'd with the host's secret and bound to the token, naming the contract and the
signer. Only a browser that opened the real link holds it; with it, the page can read the
contract's state and say which case this is. Everyone else sees one generic page.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response

from entitlements.domain.owner import Owner
from entitlements.web.sealed import SealedCookies
from entitlements.web.settings import Settings

__all__ = ["LinkMemory", "RememberedLink"]

MAX_AGE = 180 * 24 * 3600


@attrs.frozen
class RememberedLink:
    owner: Owner
    contract_id: str
    signer_id: str


class LinkMemory:
    def __init__(self, secret: bytes, settings: Settings) -> None:
        self._cookies = SealedCookies(
            secret, "link", settings, max_age=MAX_AGE, samesite="lax", limit=4000
        )

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def _name(self, token: str) -> str:
        return "ent_link_" + self._digest(token)[:24]

    def remember(
        self, request: Request, response: Response, token: str, link: RememberedLink
    ) -> None:
        document: dict[str, Any] = {
            "t": link.owner.tenant,
            "k": link.owner.kind,
            "i": link.owner.id,
            "c": link.contract_id,
            "s": link.signer_id,
        }
        self._cookies.put(request, response, self._name(token), self._digest(token), document)

    def recall(self, request: Request, token: str) -> RememberedLink | None:
        document = self._cookies.get(request, self._name(token), self._digest(token))
        if document is None:
            return None
        try:
            return RememberedLink(
                Owner(document["k"], document["i"], document["t"]),
                str(document["c"]),
                str(document["s"]),
            )
        except Exception:  # a cookie we signed but cannot read: as if there were none
            return None
