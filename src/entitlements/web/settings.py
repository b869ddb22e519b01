"""What the host tells the web package beyond the library itself, and the one place that
decides where our pages live: the origin forms must come from, the scheme cookies are
marked ``Secure`` for, and the base every link is built on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import attrs
from starlette.requests import Request

from entitlements.errors import InvalidInput

__all__ = [
    "DEFAULT_CONSENT",
    "DEFAULT_CONSENT_VERSION",
    "Settings",
    "forwarded_for",
    "peer_address",
]

DEFAULT_CONSENT = (
    "I agree to do business electronically: to receive this agreement and sign it with an "
    "electronic signature, which is as binding as a handwritten one. I can ask for a paper "
    "copy, and withdraw this consent, by writing to the sender."
)
DEFAULT_CONSENT_VERSION = "esign-consent-v1"


def peer_address(request: Request) -> str | None:
    """The TCP peer; behind a proxy, pass ``client_ip`` reading the header it sets."""
    return None if request.client is None else request.client.host


def forwarded_for(proxies: int = 1) -> Callable[[Request], str | None]:
    """``client_ip`` for a host behind ``proxies`` reverse proxies that each append the
    address they saw to ``X-Forwarded-For``: the entry that many places from the right is
    the one the nearest trusted proxy recorded. Entries further left are the client's
    own words and could be forged, so they are never used."""
    if isinstance(proxies, bool) or not isinstance(proxies, int) or proxies < 1:
        raise InvalidInput("proxies", "must be the number of proxies in front of the host", proxies)

    def client_ip(request: Request) -> str | None:
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
        hops = [h for h in hops if h]
        if len(hops) < proxies:
            return peer_address(request)
        return hops[-proxies][:100]

    return client_ip


def _base(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            name, "must be an absolute http(s) URL such as https://example.com/billing"
        )
    return value.rstrip("/")


def _base_url(value: str | None) -> str | None:
    return _base(value, "base_url")


def _signing_base_url(value: str | None) -> str | None:
    return _base(value, "signing_base_url")


def _hosts(value: Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(h, str) and h for h in value):
        raise InvalidInput("trusted_hosts", "must be a list of host names")
    return tuple(value)


@attrs.frozen
class Settings:
    consent_text: str = DEFAULT_CONSENT
    consent_version: str = DEFAULT_CONSENT_VERSION
    client_ip: Callable[[Request], str | None] = peer_address
    base_url: str | None = attrs.field(default=None, converter=_base_url)
    """Where the host mounted these pages, as browsers reach them
    (``https://example.com/billing``): links, the origin forms must come from and
    ``Secure`` cookies follow it, whatever ``Host`` or scheme a proxy passes on."""
    signing_base_url: str | None = attrs.field(default=None, converter=_signing_base_url)
    """Where signers reach the signing pages, when it is not ``base_url``."""
    trusted_hosts: tuple[str, ...] = attrs.field(default=(), converter=_hosts)
    """Without ``base_url``: the ``Host`` names requests may carry (others are refused),
    so links built from the request name only these."""

    def __attrs_post_init__(self) -> None:
        if self.base_url is None and not self.trusted_hosts:
            raise InvalidInput(
                "base_url",
                "pass base_url (where browsers reach these pages, e.g. "
                "https://example.com/billing) or trusted_hosts: links and the origin check "
                "are never built from an unchecked Host header",
            )

    def origin(self, request: Request) -> str:
        """The scheme and host browsers use for our pages (what their ``Origin`` says)."""
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            return f"{parts.scheme}://{parts.netloc}"
        return f"{request.url.scheme}://{request.url.netloc}"

    def secure(self, request: Request) -> bool:
        """Whether cookies get ``Secure``: browsers reach us over HTTPS."""
        return self.origin(request).startswith("https://")

    def url(self, request: Request, path: str, *, signing: bool = False) -> str:
        """The absolute URL of ``path`` (relative to where we are mounted)."""
        base = (self.signing_base_url if signing else None) or self.base_url
        if base is not None:
            return base + path
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return f"{self.origin(request)}{root}{path}"
