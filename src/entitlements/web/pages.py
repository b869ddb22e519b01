"""Rendering: one Jinja environment, our URLs under whatever prefix the host mounts us at,
and library errors turned into the status and words a page shows."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Router

from entitlements.errors import (
    Conflict,
    EntitlementsError,
    IllegalTransition,
    InvalidInput,
    NotAuthorized,
    NotFound,
    StaleWrite,
)
from entitlements.web.csrf import FIELD, CsrfGuard

__all__ = ["Pages", "status_for"]


def status_for(error: EntitlementsError) -> int:
    if isinstance(error, NotAuthorized):
        return 403
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict | IllegalTransition | StaleWrite):
        return 409
    if isinstance(error, InvalidInput):
        return 400
    return 422


class Pages:
    def __init__(self, csrf: CsrfGuard, router: Callable[[], Router], title: str) -> None:
        self.csrf = csrf
        self._router = router
        self.title = title
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("entitlements.web", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def seal(self, text: str) -> str:
        """A MAC for a message the console carries in a redirect's URL, so that a link
        made elsewhere cannot put words on a staff page."""
        return self.csrf.mac_of("message", text)

    def unseal(self, text: str, mac: str) -> str:
        return text if hmac.compare_digest(mac, self.seal(text)) else ""

    def route_path(self, name: str, **params: Any) -> str:
        """The path of one of our routes, relative to where the host mounted us."""
        return str(self._router().url_path_for(name, **params))

    def path(self, request: Request, name: str, **params: Any) -> str:
        root: str = request.scope.get("root_path", "")
        return root.rstrip("/") + self.route_path(name, **params)

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        bound_to: str,
        status: int = 200,
    ) -> HTMLResponse:
        token = self.csrf.token(bound_to)
        html: str = self.env.get_template(template).render(
            url=lambda name, **params: self.path(request, name, **params),
            static=lambda filename: self.path(request, "static", path=filename),
            csrf_field=FIELD,
            csrf_token=token,
            site_title=self.title,
            **context,
        )
        return HTMLResponse(html, status_code=status)
