"""A staff console and a public contract signing page that a host mounts (the ``web``
extra): server-rendered HTML on Starlette and Jinja2, no build step, the signature
canvas's script served by the package itself.

    from entitlements.web import create_app
    web = create_app(ents, authenticator=staff_from_session, secret_key=SECRET)
    host.mount("/billing", web)                 # Starlette / FastAPI
    # Flask / Django: entitlements.web.wsgi.as_wsgi(web) under the prefix

See docs/web.md.
"""

import entitlements.web._extra  # noqa: F401  (first: names the extra to install)
from entitlements.web.app import create_app, random_secret
from entitlements.web.auth import Authenticator
from entitlements.web.headers import CONTENT_SECURITY_POLICY
from entitlements.web.lists import OwnerCard
from entitlements.web.ratelimit import (
    BadTokenLimit,
    BadTokenLimiter,
    RedisBadTokenLimiter,
    SqlBadTokenLimiter,
)
from entitlements.web.settings import (
    DEFAULT_CONSENT,
    DEFAULT_CONSENT_VERSION,
    forwarded_for,
    peer_address,
)
from entitlements.web.wsgi import as_wsgi

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DEFAULT_CONSENT",
    "DEFAULT_CONSENT_VERSION",
    "Authenticator",
    "BadTokenLimit",
    "BadTokenLimiter",
    "OwnerCard",
    "RedisBadTokenLimiter",
    "SqlBadTokenLimiter",
    "as_wsgi",
    "create_app",
    "forwarded_for",
    "peer_address",
    "random_secret",
]
