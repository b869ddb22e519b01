"""The ASGI application a host mounts: the staff console and the public signing pages,
with the package's own static files, behind the security headers."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.routing import Mount, Router
from starlette.staticfiles import StaticFiles

from entitlements.errors import InvalidInput
from entitlements.service.entitlements import Entitlements
from entitlements.web.auth import Authenticator
from entitlements.web.console import Console
from entitlements.web.csrf import CsrfGuard
from entitlements.web.headers import SecurityHeaders
from entitlements.web.lists import FindOwners, OwnerCards, OwnerLists
from entitlements.web.pages import Pages
from entitlements.web.ratelimit import BadTokenLimit, default_limiter
from entitlements.web.settings import (
    DEFAULT_CONSENT,
    DEFAULT_CONSENT_VERSION,
    Settings,
    peer_address,
)
from entitlements.web.signing import SigningPages

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"


def _secret(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if not isinstance(raw, bytes) or len(raw) < 16:
        raise InvalidInput(
            "secret_key", "must be at least 16 bytes, the same in every process of the host"
        )
    return raw


def create_app(
    ents: Entitlements,
    *,
    authenticator: Authenticator,
    secret_key: bytes | str,
    consent_text: str = DEFAULT_CONSENT,
    consent_version: str = DEFAULT_CONSENT_VERSION,
    client_ip: Callable[[Request], str | None] = peer_address,
    base_url: str | None = None,
    trusted_hosts: Sequence[str] | None = None,
    signing_base_url: str | None = None,
    bad_token_limiter: BadTokenLimit | None = None,
    title: str = "Subscriptions",
    owner_card: OwnerCards | None = None,
    find_owners: FindOwners | None = None,
    login_url: str | None = None,
) -> Starlette:
    """The console (at ``/``) and the signing pages (at ``/sign/<token>``) for ``ents``.

    ``authenticator`` turns a request into the staff `Actor` or refuses (``None``); the
    console has no open default. ``secret_key`` keys the CSRF tokens and the signing
    pages' memory of opened links: every process of the host must share it. ``client_ip``
    reads the signer's address (behind a proxy, from the header it sets) for the evidence
    and the bad-token limit (`forwarded_for` reads a proxy's ``X-Forwarded-For``).

    ``base_url`` is where browsers reach this app (``https://example.com/billing``):
    every link, the origin forms must come from and the ``Secure`` flag of cookies
    follow it, whatever ``Host`` header or scheme a proxy passes on. Without it, pass
    ``trusted_hosts``: requests naming any other ``Host`` are refused (400), and links
    are built from the request. One of the two is required. ``signing_base_url`` is
    where signers reach the signing pages, if not at ``base_url``.

    The library knows owners by ``kind:id``; the host knows their names. ``owner_card``
    (``owner -> OwnerCard(name, email, url)``) is how lists and pages show an owner,
    ``url`` being the owner's page in the host's own admin; ``find_owners``
    (``text -> owners``) lets the owner search find them by name or e-mail too.
    ``login_url`` is where the "sign in required" page sends staff.
    """
    if not callable(authenticator):
        raise InvalidInput(
            "authenticator", "pass a function from the request to the staff Actor (or None)"
        )
    secret = _secret(secret_key)
    settings = Settings(
        consent_text, consent_version, client_ip, base_url, signing_base_url, trusted_hosts
    )
    router_box: list[Router] = []
    pages = Pages(CsrfGuard(secret, settings), lambda: router_box[0], title)
    limiter = bad_token_limiter or default_limiter(ents.runtime.store)
    signing = SigningPages(ents, pages, limiter, settings, secret)
    if login_url is not None and not isinstance(login_url, str):
        raise InvalidInput("login_url", "must be the URL of the host's sign-in page", login_url)
    for name, given in (("owner_card", owner_card), ("find_owners", find_owners)):
        if given is not None and not callable(given):
            raise InvalidInput(name, "must be a function of the owner (or of the text)")
    lists = OwnerLists(ents, owner_card, find_owners)
    console = Console(ents, pages, authenticator, settings, lists, login_url)
    app = Starlette(
        routes=[
            *signing.routes(),
            *console.routes(),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            *(
                [Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.trusted_hosts))]
                if settings.trusted_hosts
                else []
            ),
        ],
    )
    router_box.append(app.router)
    return app


def random_secret() -> str:
    """A fresh secret for ``secret_key`` (keep it in the host's configuration)."""
    return secrets.token_urlsafe(32)
