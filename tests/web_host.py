"""A host application for the web tests: its own login route, and entitlements.web
mounted under /billing with a test authenticator that trusts a cookie set at login."""

from __future__ import annotations

import html

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route

from entitlements import Action, Actor, Entitlements, Feature, Limit, Plan
from entitlements.service.authorization import PermissionRules
from entitlements.web import BadTokenLimiter, create_app

SECRET = "test-secret-0123456789abcdef"
STAFF_COOKIE = "test_staff"
TRUSTED_HOSTS = ["testserver", "127.0.0.1", "localhost"]


def staff(request: Request) -> Actor | None:
    name = request.cookies.get(STAFF_COOKIE)
    if not name:
        return None
    return Actor(name, "staff", {"subscriptions.manage"})


def make_ents(store) -> Entitlements:
    ents = Entitlements(store, authorizer=PermissionRules(), max_staleness=0)
    setup = Actor("setup", "staff", {"subscriptions.manage"})
    ents.plans.define(
        Plan(
            "starter",
            "Starter",
            limits={"projects": Limit(3)},
            features={"reports": Feature(actions={Action.READ})},
            trial_days=14,
            status="active",
        ),
        actor=setup,
    )
    ents.plans.define(
        Plan(
            "team",
            "Team",
            limits={"projects": Limit(50), "seats": Limit(10)},
            features={"reports": True, "sso": True},
            trial_days=30,
            status="active",
        ),
        actor=setup,
    )
    return ents


def make_host(ents: Entitlements, limiter: BadTokenLimiter | None = None) -> Starlette:
    web = create_app(
        ents,
        authenticator=staff,
        secret_key=SECRET,
        bad_token_limiter=limiter,
        trusted_hosts=TRUSTED_HOSTS,
    )

    async def login(request: Request) -> RedirectResponse:
        response = RedirectResponse("/billing/", status_code=303)
        response.set_cookie(STAFF_COOKIE, request.query_params.get("as", "ann"), httponly=True)
        return response

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host's own page")

    async def elsewhere(request: Request) -> HTMLResponse:
        """Another site (reached under another host name) linking to ``to``: following
        it is a cross-site navigation, as from a mail client or a search result."""
        target = html.escape(request.query_params.get("to", "/"))
        return HTMLResponse(f'<!doctype html><a id="go" href="{target}">go</a>')

    return Starlette(
        routes=[
            Route("/", home),
            Route("/login", login),
            Route("/elsewhere", elsewhere),
            Mount("/billing", app=web),
        ]
    )
