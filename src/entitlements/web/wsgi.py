"""Mounting under a WSGI host (Flask, Django): the ASGI app run through ``a2wsgi``.

Flask::

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    flask_app.wsgi_app = DispatcherMiddleware(flask_app.wsgi_app, {"/billing": as_wsgi(web)})

The WSGI ``SCRIPT_NAME`` becomes the ASGI ``root_path``, so every link the pages make
stays under the prefix.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp

from entitlements.extras import require

__all__ = ["as_wsgi"]


def as_wsgi(app: ASGIApp) -> Any:
    """A WSGI callable serving ``app`` (needs the ``web`` extra's ``a2wsgi``)."""
    a2wsgi = require("a2wsgi", "web", "entitlements.web.wsgi")
    return a2wsgi.ASGIMiddleware(app)
