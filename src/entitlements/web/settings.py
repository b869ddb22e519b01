"""What the host tells the web package beyond the library itself."""

from __future__ import annotations

from collections.abc import Callable

import attrs
from starlette.requests import Request

__all__ = ["DEFAULT_CONSENT", "DEFAULT_CONSENT_VERSION", "Settings", "peer_address"]

DEFAULT_CONSENT = (
    "I agree to do business electronically: to receive this agreement and sign it with an "
    "electronic signature, which is as binding as a handwritten one. I can ask for a paper "
    "copy, and withdraw this consent, by writing to the sender."
)
DEFAULT_CONSENT_VERSION = "esign-consent-v1"


def peer_address(request: Request) -> str | None:
    """The TCP peer; behind a proxy, pass ``client_ip`` reading the header it sets."""
    return None if request.client is None else request.client.host


@attrs.frozen
class Settings:
    consent_text: str = DEFAULT_CONSENT
    consent_version: str = DEFAULT_CONSENT_VERSION
    client_ip: Callable[[Request], str | None] = peer_address
    signing_base_url: str | None = None
    """Where signers reach the signing pages (``https://example.com/billing``), when it is
    not the address staff use for the console."""
