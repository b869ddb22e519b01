"""A host application for the web tests: its own login route, and entitlements.web
mounted under /billing with a test authenticator that trusts a cookie set at login."""

from __future__ import annotations

import html
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route

from entitlements import Action, Actor, Entitlements, Feature, Limit, Owner, Plan
from entitlements.service.authorization import PermissionRules
from entitlements.web import BadTokenLimiter, OwnerCard, create_app

SECRET = "test-secret-0123456789abcdef"
STAFF_COOKIE = "test_staff"
TRUSTED_HOSTS = ["testserver", "127.0.0.1", "localhost"]


DIRECTORY = {
    "organization:acme": ("Acme Inc.", "billing@acme.test"),
    "organization:globex": ("Globex Corporation", "ap@globex.test"),
    "eu/organization:initech": ("Initech", "finance@initech.test"),
}
"""The host's own records of its customers: names and e-mails the library never sees."""


def owner_card(owner: Owner) -> OwnerCard | None:
    found = DIRECTORY.get(str(owner))
    if found is None:
        return None
    return OwnerCard(found[0], found[1], f"/admin/customers/{owner.id}")


def find_owners(text: str) -> list[Owner]:
    needle = text.lower()
    return [
        Owner.parse(ref)
        for ref, (name, email) in DIRECTORY.items()
        if needle in name.lower() or needle in email.lower()
    ]


def staff(request: Request) -> Actor | None:
    name = request.cookies.get(STAFF_COOKIE)
    if not name:
        return None
    return Actor(name, "staff", {"subscriptions.manage"})


def make_ents(store, **options: Any) -> Entitlements:
    ents = Entitlements(store, authorizer=PermissionRules(), max_staleness=0, **options)
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
        owner_card=owner_card,
        find_owners=find_owners,
        login_url="/login?next=/billing/",
    )

    async def login(request: Request) -> RedirectResponse:
        response = RedirectResponse("/billing/", status_code=303)
        response.set_cookie(STAFF_COOKIE, request.query_params.get("as", "ann"), httponly=True)
        return response

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host's own page")

    async def customer(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"the host's admin page of {request.path_params['id']}")

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
            Route("/admin/customers/{id}", customer),
            Mount("/billing", app=web),
        ]
    )
